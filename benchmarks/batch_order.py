"""One decode step of several sequences, with one shared KV cache and with a
cache per sequence, for several orders of the sequences in the batch.

    python benchmarks/batch_order.py [--model models/bench.gguf] [-r 6]

With a cache per sequence llama.cpp decodes in one pass only consecutive
sequence ids listed in increasing order (llama_batch_allocr::split_equal);
any other batch takes several passes over the weights. The shared cache
(`Model(kv_unified=True)`, the default for n_seq_max > 1) takes one.
Prints the median milliseconds of one llama_decode per batch shape.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from shimmy_py import Model

ROOT = Path(__file__).resolve().parent.parent
ORDERS = ([0], [0, 1], [0, 1, 2, 3], [2, 0, 1, 3], [3, 2, 1, 0], [0, 1, 3])


def step_times(path: Path, unified: bool, threads: int, reps: int) -> dict[str, float]:
    with Model(path, n_ctx=4096, n_seq_max=4, n_threads=threads, kv_unified=unified) as m:
        tokens = m.tokenize("Explain the architecture of DeepSeek MoE")
        with m.context.session() as ctx:
            for s in range(4):   # a short prompt in each sequence
                ctx.decode(tokens, range(len(tokens)), [s] * len(tokens),
                           [i == len(tokens) - 1 for i in range(len(tokens))])
            pos = [len(tokens)] * 4
            times: dict[str, list[float]] = {}
            for _ in range(reps):
                for order in ORDERS:
                    t = time.perf_counter()
                    ctx.decode([tokens[-1]] * len(order), [pos[s] for s in order], order,
                               [True] * len(order))
                    times.setdefault(",".join(map(str, order)), []).append((time.perf_counter() - t) * 1000)
                    for s in order:
                        pos[s] += 1
        m.reset()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-r", type=int, default=6)
    a = ap.parse_args()
    shared = step_times(a.model, True, a.threads, a.r)
    per_seq = step_times(a.model, False, a.threads, a.r)
    print(f"{'sequences in the batch':24} {'shared KV ms':>14} {'KV per sequence ms':>20}")
    for key in shared:
        print(f"{key:24} {shared[key]:14.1f} {per_seq[key]:20.1f}")


if __name__ == "__main__":
    main()
