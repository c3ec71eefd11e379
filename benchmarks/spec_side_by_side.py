"""Speculative decoding beside llama-server's (issue 23): the same model, the
same --spec-type and draft settings on stock llama-server and on shimmy-py
serve, one client, greedy; decode tokens/s and drafts kept, and each mode
against no speculation on the same server.

    python benchmarks/spec_side_by_side.py [--rounds 5] [-n 256]

The models are `looper`s of the bench preset's shape (64 routed experts, 6
active, F16; shimmy_py/synthetic/behaviours.py): their layers are random, so
a token costs what it costs in a random model of that shape, but greedy
output repeats a 24-token loop, which is the output n-gram speculation and an
MTP head pay off on (a random-weight model's output rarely repeats a 12-gram:
on it ngram-simple drafts nothing and costs only its lookups). One has the
DeepSeekMoE layout (models/bench-loop.gguf), one GLM-4.5's with its NextN
block, whose head predicts the loop too (models/bench-loop-glm.gguf).
Modes, at llama.cpp's defaults unless named:
  none          plain decoding (on each model: the speedups' baseline);
  ngram-simple  drafts from the text already seen (n 12, m 48);
  draft-simple  the target as its own draft model (-md the same file,
                --spec-draft-n-max 3): every draft agrees, so this is the
                upper bound of what a draft model can give and shows what
                drafting and verifying cost on a MoE model on a CPU (a draft
                as large as the target costs as much as the tokens it saves);
  draft-mtp     the GLM looper's own NextN head (--spec-draft-n-max 3).
Servers alternate within each round (a fresh process each), which goes
first alternating from round to round; a ratio is taken within a round and
the median over rounds shown with its range.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess  # noqa: E402

from shimmy_py.native import install as native  # noqa: E402
from shimmy_py.procs import free_port  # noqa: E402

PROMPT = "Once upon a time"
MODELS = {"deepseek": ROOT / "models" / "bench-loop.gguf", "glm4moe": ROOT / "models" / "bench-loop-glm.gguf"}
CASES = (("none", "deepseek"), ("ngram-simple", "deepseek"), ("draft-simple", "deepseek"),
         ("none", "glm4moe"), ("draft-mtp", "glm4moe"))


def write_models() -> None:
    from dataclasses import replace

    from shimmy_py.synthetic.behaviours import looper
    from shimmy_py.synthetic.synth import DTYPES, PRESETS
    for family, path in MODELS.items():
        if not path.exists():   # the family's own vocabulary (the preset's is DeepSeek LLM's)
            print(f"writing {path} (looper, {family}, bench preset's shape)", file=sys.stderr)
            looper(path, family=family, shape=replace(PRESETS["bench"].shape, n_vocab=0), dtype=DTYPES["f16"])


def spec_flags(mode: str, model: Path) -> list[str]:
    """The same flags for both servers (shimmy-py serve takes llama-server's)."""
    if mode == "ngram-simple":
        return ["--spec-type", "ngram-simple"]
    if mode == "draft-simple":
        return ["--spec-type", "draft-simple", "-md", str(model), "--spec-draft-n-max", "3"]
    if mode == "draft-mtp":
        return ["--spec-type", "draft-mtp", "--spec-draft-n-max", "3"]
    return []


def servers(model: Path, threads: int, ctx: int, mode: str, peer: str = "stock") -> list[tuple[str, list[str], int]]:
    port_a, port_b = free_port(), free_port()
    llama = [str(native.mode_tool(peer, "llama-server")), "-m", str(model), "-c", str(ctx), "-np", "1",
             "-t", str(threads), "--host", "127.0.0.1", "--port", str(port_a), "--no-webui", *spec_flags(mode, model)]
    ours = [sys.executable, "-m", "shimmy_py", "serve", "--model", str(model), "--ctx", str(ctx), "--parallel", "1",
            "--threads", str(threads), "--port", str(port_b), *spec_flags(mode, model)]
    return [("llama-server", llama, port_a), ("shimmy-py serve", ours, port_b)]


def complete(url: str, n: int) -> dict:
    """One greedy, non-streamed completion: tokens/s over the whole request
    (a 5-token prompt: prefill is a few ms of it) and the drafts."""
    body = json.dumps({"prompt": PROMPT, "max_tokens": n, "temperature": 0}).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=1800) as r:
        out = json.loads(r.read())
    wall = time.perf_counter() - t0
    tokens = out["usage"]["completion_tokens"]
    timings = out.get("timings") or {}
    return {"tps": tokens / wall, "tokens": tokens, "text": out["choices"][0]["text"],
            "drafted": timings.get("draft_n", 0), "accepted": timings.get("draft_n_accepted", 0)}


def spec_rounds(threads: int, n: int, rounds: int) -> dict:
    """{(server, (mode, family)): [one result per round]}; each a fresh server
    process. Which server runs first alternates from round to round, so that
    a drift within a round favours neither."""
    write_models()
    runs: dict = {}
    for r in range(rounds):
        for case in CASES:
            pair = servers(MODELS[case[1]], threads, 1024, case[0])
            for name, argv, port in (pair if r % 2 == 0 else pair[::-1]):
                with ServerProcess(argv, port) as srv:
                    complete(srv.url, 8)                  # warm-up
                    runs.setdefault((name, case), []).append(complete(srv.url, n))
    return runs


def _ratios(runs: dict, a: tuple, b: tuple) -> tuple[float, float, float]:
    r = [x["tps"] / y["tps"] for x, y in zip(runs[a], runs[b])]
    return statistics.median(r), min(r), max(r)


def summary(runs: dict) -> dict:
    """Per case: each server's median tok/s, drafts kept, shimmy/llama ratio,
    and each server's speedup over its own plain decoding of that model."""
    out = {}
    for case in CASES:
        row = {"ratio": _ratios(runs, ("shimmy-py serve", case), ("llama-server", case)),
               "same_text": all(x["text"] == y["text"] for x, y in
                                zip(runs[("shimmy-py serve", case)], runs[("llama-server", case)]))}
        for name in ("llama-server", "shimmy-py serve"):
            rs = runs[(name, case)]
            row[name] = {"tps": statistics.median(x["tps"] for x in rs),
                         "kept": f"{sum(x['accepted'] for x in rs)}/{sum(x['drafted'] for x in rs)}",
                         "speedup": _ratios(runs, (name, case), (name, ("none", case[1])))}
        out[f"{case[0]} ({MODELS[case[1]].stem})"] = row
    return out


def _fmt(v: tuple) -> str:
    return f"{v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})"


def markdown(s: dict, n: int, rounds: int) -> list[str]:
    lines = [f"One client, greedy, {n} tokens after a 5-token prompt, non-streamed /v1/completions; "
             f"{rounds} rounds, a fresh server per run, which server goes first alternating; medians, ranges in "
             "brackets. Models: `looper`s of the bench preset's shape, DeepSeekMoE's layout and GLM-4.5's with "
             "its NextN block (random layers, greedy output that repeats; `benchmarks/spec_side_by_side.py` "
             "says why). draft-simple drafts with the target itself (every draft agrees): the upper bound of a "
             "draft model, at a draft's full price.", "",
             "| mode | llama-server tok/s | drafts kept | vs its plain | shimmy-py tok/s | drafts kept | vs its plain "
             "| shimmy / llama | same text |", "|---|---|---|---|---|---|---|---|---|"]
    for case, row in s.items():
        a, b = row["llama-server"], row["shimmy-py serve"]
        lines.append(f"| {case} | {a['tps']:.2f} | {a['kept']} | {_fmt(a['speedup'])} | {b['tps']:.2f} | "
                     f"{b['kept']} | {_fmt(b['speedup'])} | {_fmt(row['ratio'])} | "
                     f"{'yes' if row['same_text'] else 'no'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False))
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    s = summary(spec_rounds(a.threads, a.n, a.rounds))
    print("\n".join(markdown(s, a.n, a.rounds)))


if __name__ == "__main__":
    main()
