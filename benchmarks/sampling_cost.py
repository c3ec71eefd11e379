"""What sampling one token costs beside decoding it, on one model.

    python benchmarks/sampling_cost.py [--model models/bench.gguf] [-n 200]

After a short prompt, times (mean over n calls) llama.cpp's sampler chain
for greedy and for the default settings (top-k 40, top-p, min-p,
temperature, seeded draw), shimmy_py's in-place argmax for plain greedy, and
one decode step of a single token, in milliseconds.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from shimmy_py import Model
from shimmy_py.generation.sampling import Argmax, Chain, SamplingParams, build_sampler
from shimmy_py.native.sampler_chain import SamplerChain

ROOT = Path(__file__).resolve().parent.parent


def mean_ms(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=200)
    a = ap.parse_args()
    with Model(a.model, n_ctx=1024, n_threads=a.threads) as m:
        tokens = m.tokenize("Explain the architecture of DeepSeek MoE")
        with m.context.session() as ctx:
            ctx.prefill(tokens)
            greedy_chain = Chain(SamplerChain())
            greedy_chain.chain.add_greedy()
            default_chain = build_sampler(SamplingParams(seed=1), m.n_vocab)
            argmax = Argmax()
            rows = [("llama.cpp chain, greedy", mean_ms(lambda: greedy_chain.sample(ctx, -1), a.n)),
                    ("llama.cpp chain, default settings", mean_ms(lambda: default_chain.sample(ctx, -1), a.n)),
                    ("in-place argmax (plain greedy)", mean_ms(lambda: argmax.sample(ctx, -1), a.n))]
            pos = iter(range(len(tokens), m.n_ctx))
            rows.append(("decode step, 1 token", mean_ms(lambda: ctx.step(tokens[-1], next(pos)), 20)))
            greedy_chain.close()
            default_chain.close()
        m.reset()
    for name, ms in rows:
        print(f"{name:36} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
