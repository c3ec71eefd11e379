"""What tracing expert routing costs (issue 22): the same greedy generation on
the bench model, plain and with trace_experts=True, alternating within each
round; decode and prefill tokens/s, ratios taken within rounds.

    python benchmarks/trace_cost.py [--model models/bench.gguf] [-p 512] [-n 128] [--rounds 5]

A traced prefill asks llama.cpp for every prompt token's logits (its last
layer routes only the tokens whose logits are wanted), so it costs more than
the tap alone; the target is on decode.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import psutil

from shimmy_py import Model
from shimmy_py.bench import random_prompt
from shimmy_py.generation.loop import drain

ROOT = Path(__file__).resolve().parent.parent


def trace_rounds(model: Path, p: int, n: int, threads: int, rounds: int) -> list[dict]:
    out = []
    with Model(model, n_ctx=p + n + 16, n_threads=threads) as m:
        drain(m.stream_tokens(random_prompt(m, 8, 0), max_tokens=2, temperature=0, trace_experts=True))  # warm-up
        for r in range(rounds):
            row = {}
            order = ("plain", "traced") if r % 2 == 0 else ("traced", "plain")
            for kind in order:
                m.reset()
                c = drain(m.stream_tokens(random_prompt(m, p, r), max_tokens=n, temperature=0,
                                          trace_experts=kind == "traced"))
                row[f"{kind}_decode"], row[f"{kind}_prefill"] = c.tokens_per_s, c.prefill_tokens_per_s
            out.append(row)
    return out


def summary(rows: list[dict]) -> dict:
    def ratio(key):
        values = [r[f"traced_{key}"] / r[f"plain_{key}"] for r in rows]
        return statistics.median(values), min(values), max(values)
    return {"decode": ratio("decode"), "prefill": ratio("prefill"), "rounds": len(rows),
            "plain_decode_tps": statistics.median(r["plain_decode"] for r in rows),
            "traced_decode_tps": statistics.median(r["traced_decode"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False))
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    print(json.dumps(summary(trace_rounds(a.model, a.p, a.n, a.threads, a.rounds))))


if __name__ == "__main__":
    main()
