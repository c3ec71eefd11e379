"""A model larger than the memory it is given: decode speed under a memory
cgroup, stock llama-bench beside shimmy-py with plain mmap and with routed
experts streamed from the file (both prefetch methods), in interleaved
rounds, each run after the page cache is dropped. Needs root (cgroup v1).

    python benchmarks/streaming.py [--limit 0.74GiB] [--rounds 3] [--tokens 32] [--model PATH]

The model is the bench preset (1.5 GB F16: 6 layers, 64 experts of which 6
are routed, DeepSeekMoE's layout), written to a temporary folder. Every
run decodes --tokens tokens (llama-bench: `-p 0 -n N`; shimmy-py: `bench
-p 8 -n N`, both warm up first) with 2 threads. Disk reads are the kernel's
pages read in during the run (/proc/vmstat pgpgin), per decoded token. The
prediction is `plan --predict` in the same cgroup, from the machine profile
(`shimmy-py calibrate`; none: not shown). Prints medians and ranges, and
each shimmy-py row's ratio to llama-bench, round by round.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shimmy_py.native import install  # noqa: E402
from shimmy_py.procs import MemoryLimit  # noqa: E402
from shimmy_py.sizes import parse_size  # noqa: E402


def pages_in() -> int:
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("pgpgin ")) * 1024


def stock_bench(cg: MemoryLimit, model: str, tokens: int) -> tuple[float, int]:
    tool = install.cache_dir() / "stock" / "bin" / "llama-bench"
    if not tool.exists():
        tool = install.tool("llama-bench")
    before = pages_in()
    done, _ = cg.run([str(tool), "-m", model, "-p", "0", "-n", str(tokens), "-t", "2", "-r", "1", "-o", "json"])
    if done.returncode:
        raise RuntimeError(f"llama-bench failed: {done.stderr[-400:]}")
    return json.loads(done.stdout)[0]["avg_ts"], pages_in() - before


def shimmy_bench(cg: MemoryLimit, model: str, tokens: int, extra: list[str], env: dict) -> tuple[float, int, dict]:
    """(decode tok/s, bytes paged in, the bench row: its `streamed` figures among them)."""
    before = pages_in()
    done, _ = cg.run([sys.executable, "-m", "shimmy_py", "bench", model, "-p", "8", "-n", str(tokens), "-r", "1",
                      "--threads", "2", "--json", *extra], env=env, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"shimmy-py bench failed: {done.stderr[-600:]}")
    r = json.loads(done.stdout)[0]
    return r["decode_tps"], pages_in() - before, r


def main() -> int:
    import os
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", default="0.74GiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    from shimmy_py.synthetic.synth import write
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(Path(tmp.name) / "bench.gguf")
    if not args.model:
        write(model, preset="bench")
    limit = parse_size(args.limit)
    size = os.path.getsize(model)
    print(f"{Path(model).name}: {size / 2**30:.2f} GiB under a {limit / 2**30:.2f} GiB memory cgroup, "
          f"{args.tokens} tokens, {args.rounds} rounds")
    rows = {"llama-bench (stock)": [], "shimmy-py, plain mmap": [], "shimmy-py, streamed (fadvise)": [],
            "shimmy-py, streamed (pread)": []}
    env = dict(os.environ)
    predicted, expected_miss, misses = None, None, {}
    ctx = ["--ctx", str(8 + args.tokens + 16)]
    with MemoryLimit(limit) as cg:
        done, _ = cg.run([sys.executable, "-m", "shimmy_py", "plan", model, "--predict", "--json", *ctx],
                         cwd=ROOT, drop_caches=False)
        if done.returncode == 0:
            predicted = json.loads(done.stdout)[0].get("decode_tps")
        done, _ = cg.run([sys.executable, "-m", "shimmy_py", "plan", model, "--json", *ctx], cwd=ROOT,
                         drop_caches=False)
        tiers = json.loads(done.stdout)["tiers"] if done.returncode == 0 else None
        expected_miss = tiers["miss_rate"] if tiers else None
        for _ in range(args.rounds):
            rows["llama-bench (stock)"].append(stock_bench(cg, model, args.tokens))
            tps, read, _ = shimmy_bench(cg, model, args.tokens, ["--ram-budget", "1TiB"], env)
            rows["shimmy-py, plain mmap"].append((tps, read))
            for method in ("fadvise", "pread"):
                tps, read, r = shimmy_bench(cg, model, args.tokens, ["--stream-method", method], env)
                rows[f"shimmy-py, streamed ({method})"].append((tps, read))
                misses.setdefault(method, []).append(r["streamed"]["miss_rate"])
    peer = [tps for tps, _ in rows["llama-bench (stock)"]]
    print(f"{'run':<32} {'decode tok/s (min-max)':>24} {'disk MiB/token*':>15} {'/ llama-bench (min-max)':>26}")
    for name, runs in rows.items():
        tps = [t for t, _ in runs]
        ratio = [t / p for t, p in zip(tps, peer)]
        read = statistics.median(r for _, r in runs) / args.tokens / 2**20
        print(f"{name:<32} {statistics.median(tps):>9.2f} ({min(tps):.2f}-{max(tps):.2f}) {read:>15.1f} "
              f"{statistics.median(ratio):>12.2f} ({min(ratio):.2f}-{max(ratio):.2f})")
    print("* pages read in during the whole run (load and warm-up included), per generated token")
    if predicted:
        print(f"predicted by plan --predict for the streamed plan: {predicted:.2f} tok/s")
    if expected_miss is not None:
        print(f"routed expert slices missed: the plan expected {expected_miss:.0%}; the streamer measured "
              + ", ".join(f"{m} {min(v):.0%}-{max(v):.0%}" for m, v in misses.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
