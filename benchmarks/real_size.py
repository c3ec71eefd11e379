"""A real-size MoE on this machine's CPU (issue 23): DeepSeekMoE 16B's shapes
with Q8_0 random weights (about 17 GB), against stock llama-bench, and its
decode speed against the memory-bandwidth limit. Not part of `make test`.

    python benchmarks/real_size.py [--model models/ds16b-q8-loop.gguf] [-p 512] [-n 128] [-r 2]
    python benchmarks/real_size.py --pairs 3      # decode only, llama-bench and shimmy-py alternating
    python benchmarks/real_size.py --pairs 2 --random-tokens   # the same, random tokens fed to Context.step

The model is the `looper` behaviour at the deepseek-moe-16b preset's shape
(`shimmy-py synth ... --behaviour looper --preset deepseek-moe-16b --dtype
q8_0`, written here if missing): its 28 layers of 64 routed experts (6
active) and 2 shared experts are random, so a token costs what it costs in
any DeepSeekMoE 16B at Q8_0, and its greedy output repeats a 24-token loop,
so n-gram speculation has drafts to verify.

1. Bandwidth: the best of five copies of a 2 GiB NumPy array (read + write
   bytes over the time) on this machine.
2. Bytes a decoded token reads: every tensor of the plan, routed experts at
   the share a token routes to (6 of 64), the token embedding at one row.
   Their quotient is the decode limit; the fraction reached is reported.
3. stock llama-bench (pp P, tg N at depth P) and `shimmy-py bench` in
   separate processes, each load mode its own process (peak RSS is the
   process's high-water mark), then shimmy-py with --spec-type ngram-simple.
4. With --pairs N instead: decode only (64 tokens after a 64-token prompt),
   llama-bench and shimmy-py alternating N times, the ratio within each pair;
   with --random-tokens shimmy-py decodes random tokens as llama-bench does
   (straight to Context.step: no sampling, no generation loop).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent

from shimmy_py.gguf_io.tensors import read_table  # noqa: E402
from shimmy_py.native import install as native  # noqa: E402


def bandwidth_gbs(size: int = 2 << 30, reps: int = 5) -> float:
    src = np.ones(size // 8, np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * size / best / 1e9


def bytes_per_token(model: Path) -> int:
    table = read_table(model)
    total = 0.0
    for t in table.tensors:
        if t.role == "token_embd":
            total += t.nbytes / max(1, table.hparams.n_vocab)
        else:
            total += t.nbytes * table.active_fraction(t)
    return int(total)


def llama_bench(model: Path, p: int, n: int, reps: int, threads: int,
                keys: tuple = ("prefill_tps", "decode_tps")) -> dict:
    tool = str(native.mode_tool("stock", "llama-bench"))
    out = {}
    for key, args in (("prefill_tps", ["-p", str(p), "-n", "0"]),
                      ("decode_tps", ["-p", "0", "-n", str(n), "-d", str(p)])):
        if key not in keys:
            continue
        proc = subprocess.run([tool, "-m", str(model), "-r", str(reps), "-t", str(threads), "-o", "json", *args],
                              capture_output=True, text=True, timeout=7200, check=True)
        out[key] = json.loads(proc.stdout)[0]["avg_ts"]
    return out


def ours(model: Path, p: int, n: int, reps: int, threads: int, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "shimmy_py", "bench", str(model), "-p", str(p), "-n", str(n),
                           "-r", str(reps), "--threads", str(threads), "--json", *flags],
                          capture_output=True, text=True, timeout=7200, check=True)
    return json.loads(proc.stdout)[0]


def random_tokens_tps(model: Path, threads: int, p: int = 64, n: int = 64) -> float:
    """Decode tokens/s of random tokens fed to the context one at a time after
    a random p-token prompt, as llama-bench's tg test feeds them."""
    from shimmy_py import Model
    with Model(model, n_ctx=p + n + 16, n_threads=threads) as m:
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, m.n_vocab, n).tolist()
        with m.context.session() as c:
            c.clear()
            c.prefill([m.bos] + rng.integers(0, m.n_vocab, p - 1).tolist())
            c.step(tokens[0], p)                     # the first, as llama-bench's warm-up
            t0 = time.perf_counter()
            for i, token in enumerate(tokens[1:]):
                c.step(token, p + 1 + i)
            return (n - 1) / (time.perf_counter() - t0)


def pairs(model: Path, threads: int, n: int, random_tokens: bool) -> None:
    ratios = []
    for i in range(n):
        theirs = llama_bench(model, 64, 64, 1, threads, ("decode_tps",))["decode_tps"]
        mine = random_tokens_tps(model, threads) if random_tokens else \
            ours(model, 64, 64, 1, threads, "--load-mode", "mmap")["decode_tps"]
        ratios.append(mine / theirs)
        print(f"pair {i + 1}: llama-bench {theirs:.2f} tok/s, shimmy-py {mine:.2f} tok/s, ratio {ratios[-1]:.3f}",
              flush=True)
    print(f"median ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "ds16b-q8-loop.gguf")
    ap.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False))
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=0, help="decode only: N alternating pairs")
    ap.add_argument("--random-tokens", action="store_true", help="--pairs: shimmy-py decodes random tokens")
    a = ap.parse_args()
    if not a.model.exists():
        from shimmy_py.synthetic.behaviours import looper
        from shimmy_py.synthetic.synth import DTYPES, PRESETS
        print(f"writing {a.model} (about 17 GB)", file=sys.stderr)
        looper(a.model, family="deepseek", shape=PRESETS["deepseek-moe-16b"].shape, dtype=DTYPES["q8_0"])
    if a.pairs:
        pairs(a.model, a.threads, a.pairs, a.random_tokens)
        return
    t0 = time.time()
    bw = bandwidth_gbs()
    per_token = bytes_per_token(a.model)
    limit = bw * 1e9 / per_token
    theirs = llama_bench(a.model, a.p, a.n, a.r, a.threads)
    rows = [("llama-bench (stock)", "mmap", theirs["prefill_tps"], theirs["decode_tps"], None, None, "")]
    for mode in ("mmap", "none"):
        r = ours(a.model, a.p, a.n, a.r, a.threads, "--load-mode", mode)
        rows.append(("shimmy-py bench", mode, r["prefill_tps"], r["decode_tps"], r["load_s"], r["peak_rss_bytes"], ""))
    r = ours(a.model, a.p, a.n, a.r, a.threads, "--load-mode", "mmap", "--spec-type", "ngram-simple")
    rows.append(("shimmy-py bench, ngram-simple", "mmap", r["prefill_tps"], r["decode_tps"], r["load_s"],
                 r["peak_rss_bytes"], f"{r['draft_accepted']}/{r['drafted']}"))
    size = a.model.stat().st_size
    print(f"Model: {a.model.name}, {size / 1e9:.1f} GB; {a.threads} threads; prompt {a.p}, generated {a.n}, "
          f"{a.r} repetitions; {(time.time() - t0) / 60:.1f} min.\n")
    print(f"Bandwidth (NumPy copy, best of 5): {bw:.1f} GB/s. A decoded token reads {per_token / 1e9:.2f} GB "
          f"(routed experts at 6/64): decode limit {limit:.2f} tok/s.\n")
    print("| run | load mode | prefill tok/s | decode tok/s | of the limit | vs llama-bench decode | load s "
          "| peak RSS GB | drafts kept |\n|---|---|---|---|---|---|---|---|---|")
    for name, mode, pp, tg, load, rss, kept in rows:
        print(f"| {name} | {mode} | {pp:.2f} | {tg:.2f} | {tg / limit:.2f} | {tg / theirs['decode_tps']:.3f} | "
              f"{'' if load is None else f'{load:.1f}'} | {'' if rss is None else f'{rss / 1e9:.1f}'} | {kept} |")


if __name__ == "__main__":
    main()
