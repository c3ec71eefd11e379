"""Decode speed measured beside the speed `plan --predict` gave before
loading, on every configuration issue 35 names, stock llama-bench in the
same runs, as root (memory cgroups v1):

    python benchmarks/streaming.py [--limit 0.74GiB] [--rounds 5] [--tokens 32] [--model PATH]
                                   [--flagship DIR [--flagship-only]] [--flagship-tokens 32]

- in RAM: the bench preset (1.5 GB F16: 6 layers, 64 experts of which 6 are
  routed, DeepSeekMoE's layout) read from a warm page cache, at 1 and 2
  threads: llama-bench `-p 0 -n N -t T` and shimmy-py `bench -p 8 -n N
  --feed random` (each decoded token followed by a random one, as
  llama-bench feeds them: the experts a token reads follow its input);
- under a memory cgroup of about half the model (--limit), each run after
  the page cache is dropped, in interleaved rounds: llama-bench, shimmy-py
  with plain mmap (`--ram-budget 1TiB`: nothing streams), and with routed
  experts streamed by each read method (pread, fadvise, own); disk reads are the pages read in
  during a run (/proc/vmstat pgpgin), per generated token, load included;
  the file-bandwidth limit is the decode speed at which reading the bytes
  the streamer read a decoded token (decode's alone) would
  take all the time, at the rate
  8 readers read slices of that size into the page cache (the profile's:
  into a free page cache, and, where calibrate measured it as root, into a
  memory cgroup's full one);
- with --flagship DIR: DeepSeekMoE 16B at F16 (32.8 GB; written into DIR
  by `synth` unless there) on this machine's own RAM, llama-bench and
  shimmy-py streaming, --flagship-tokens tokens, one round; then shimmy-py
  with a routing profile traced on 40 random tokens' text (`trace -n 1`),
  predicted and measured with it;
- after each model, the first whole file `plan` proposes in the same memory
  (routed experts at the most precise type that fits, else the one it
  predicts fastest), made by the `shimmy-py quantize` command it prints
  (kept in DIR for the flagship) and decoded by both in the same memory,
  after the page cache is dropped, then once more with it as the run left it.
The predictions are `plan --predict --threads T --json` in the same memory,
from the machine profile (`shimmy-py calibrate` first; without one the
script stops). Each row prints the median (min-max) over the rounds and the
prediction's error against the median.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shimmy_py.gguf_io.reader import read_header  # noqa: E402
from shimmy_py.native import install  # noqa: E402
from shimmy_py.placement.options import STREAM_METHODS  # noqa: E402
from shimmy_py.placement.predict import file_rate  # noqa: E402
from shimmy_py.placement.profile import load_profile  # noqa: E402
from shimmy_py.procs import MemoryLimit  # noqa: E402
from shimmy_py.sizes import parse_size  # noqa: E402

SHIMMY = [sys.executable, "-m", "shimmy_py"]


def pages_in() -> int:
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("pgpgin ")) * 1024


def stock_tool() -> str:
    tool = install.cache_dir() / "stock" / "bin" / "llama-bench"
    return str(tool if tool.exists() else install.tool("llama-bench"))


def run(cg, argv: list[str], drop: bool = True):
    """(completed process, pages read in) of one run, in the cgroup or not."""
    before = pages_in()
    if cg is not None:
        done, _ = cg.run(argv, cwd=ROOT, drop_caches=drop)
    else:
        import subprocess
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr[-800:]}")
    return done, pages_in() - before


def stock(cg, model: str, tokens: int, threads: int, drop: bool = True) -> dict:
    done, read = run(cg, [stock_tool(), "-m", model, "-p", "0", "-n", str(tokens), "-t", str(threads), "-r", "1",
                          "-o", "json"], drop)
    return {"tps": json.loads(done.stdout)[0]["avg_ts"], "read": read / tokens}


def shimmy(cg, model: str, tokens: int, threads: int, extra=(), drop: bool = True) -> dict:
    done, read = run(cg, [*SHIMMY, "bench", model, "-p", "8", "-n", str(tokens), "-r", "1", "--threads",
                          str(threads), "--feed", "random", "--json", *extra], drop)
    r = json.loads(done.stdout)[0]
    return {"tps": r["decode_tps"], "read": read / tokens, "streamed": r.get("streamed")}


def predicted(cg, model: str, threads: int, ctx: int, extra=()) -> float:
    done, _ = run(cg, [*SHIMMY, "plan", model, "--predict", "--json", "--threads", str(threads), "--ctx", str(ctx),
                       *extra], drop=False)
    return json.loads(done.stdout)[0]["decode_tps"]


def row(name: str, runs: list[dict], peer: list[dict] | None = None, pred: float | None = None,
        limit: float | None = None) -> str:
    tps = [r["tps"] for r in runs]
    med = statistics.median(tps)
    out = f"{name:<34} {med:7.2f} ({min(tps):.2f}-{max(tps):.2f})"
    out += f" {statistics.median(r['read'] for r in runs) / 2**20:9.1f}"
    if peer:
        ratio = [r["tps"] / p["tps"] for r, p in zip(runs, peer)]
        out += f"  x{statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})"
    if pred is not None:
        out += f"  predicted {pred:.2f} ({(pred - med) / med:+.0%})"
    if limit is not None:
        out += f"  {med / limit:.0%} of the file-bandwidth limit ({limit:.1f})"
    return out


def read_size(model) -> int:
    """One expert's slice of one matrix: what the streamer reads in one request."""
    return next(t.nbytes // t.shape[2] for t in read_header(model).tensors if "_exps." in t.name)


def limit_of(runs: list[dict], profile: dict, slice_bytes: int, key: str = "file_cached_read_bps") -> float:
    """Decode speed if the streamer's reads per token took all the time, at
    the profile's rate of 8 readers reading slices into the page cache
    (`key`: free, or under a memory cgroup's pressure)."""
    per_token = statistics.median(r["streamed"]["decode"]["file_bytes_per_token"] for r in runs)
    return file_rate(profile, slice_bytes, key=key) / per_token if per_token else float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", default="0.74GiB")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default=None)
    ap.add_argument("--flagship", default=None, metavar="DIR")
    ap.add_argument("--flagship-tokens", type=int, default=32)
    ap.add_argument("--flagship-only", action="store_true", help="with --flagship: that model alone")
    args = ap.parse_args()
    profile = load_profile()
    if profile is None:
        print("no machine profile: run `shimmy-py calibrate` first", file=sys.stderr)
        return 1
    if args.flagship_only:
        if not args.flagship:
            ap.error("--flagship-only needs --flagship DIR")
        flagship(Path(args.flagship), args.flagship_tokens, profile)
        return 0
    from shimmy_py.synthetic.synth import write
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(Path(tmp.name) / "bench.gguf")
    if not args.model:
        write(model, preset="bench")
    slice_bytes = read_size(model)
    print(f"{'run':<34} {'decode tok/s':>7} {'(min-max)':>11} {'MiB/token':>9}  x stock  predicted (error)")

    print(f"in RAM: {Path(model).name}, {os.path.getsize(model) / 2**30:.2f} GiB, page cache warm, "
          f"{args.rounds} rounds")
    for threads in (1, 2):
        peer = [stock(None, model, args.tokens, threads) for _ in range(args.rounds)]
        ours = [shimmy(None, model, args.tokens, threads, ["--ram-budget", "1TiB"]) for _ in range(args.rounds)]
        print(row(f"llama-bench, {threads} thread{'s' if threads > 1 else ''}", peer))
        print(row(f"shimmy-py, {threads} thread{'s' if threads > 1 else ''}", ours, peer,
                  predicted(None, model, threads, 8 + args.tokens + 16, ["--ram-budget", "1TiB"])))

    limit = parse_size(args.limit)
    print(f"under a {limit / 2**30:.2f} GiB memory cgroup, page cache dropped before each run, 2 threads, "
          f"{args.rounds} rounds")
    rows: dict[str, list[dict]] = {"llama-bench": [], "shimmy-py, plain mmap": [],
                                   **{f"shimmy-py, streamed ({method})": [] for method in STREAM_METHODS}}
    with MemoryLimit(limit) as cg:
        pred = predicted(cg, model, 2, 8 + args.tokens + 16)
        for _ in range(args.rounds):
            rows["llama-bench"].append(stock(cg, model, args.tokens, 2))
            rows["shimmy-py, plain mmap"].append(shimmy(cg, model, args.tokens, 2, ["--ram-budget", "1TiB"]))
            for method in STREAM_METHODS:
                rows[f"shimmy-py, streamed ({method})"].append(
                    shimmy(cg, model, args.tokens, 2, ["--stream-method", method]))
        report(rows, pred, profile, slice_bytes)
        default = rows[f"shimmy-py, streamed ({STREAM_METHODS[0]})"]
        proposal(cg, model, args.tokens, args.rounds, Path(tmp.name), default)
    if args.flagship:
        flagship(Path(args.flagship), args.flagship_tokens, profile)
    print("MiB/token: pages read in during a whole run (load and warm-up included), per generated token")
    return 0


def report(rows: dict, pred: float, profile: dict, slice_bytes: int) -> None:
    """The rows under the cgroup, each against llama-bench, the prediction and the file-bandwidth limit."""
    peer = rows["llama-bench"]
    for name, runs in rows.items():
        streamed = "streamed" in name
        print(row(name, runs, None if runs is peer else peer, pred if streamed else None,
                  limit_of(runs, profile, slice_bytes) if streamed else None))
    if "file_pressured_read_bps" in profile:
        for name, runs in rows.items():
            if "streamed" in name:
                limit = limit_of(runs, profile, slice_bytes, "file_pressured_read_bps")
                print(f"{name}: {statistics.median(r['tps'] for r in runs) / limit:.0%} of the file-bandwidth "
                      f"limit at the rate reads reach under memory pressure ({limit:.1f} tok/s)")
    misses = {name: [r["streamed"]["decode"]["miss_rate"] for r in runs]
              for name, runs in rows.items() if "streamed" in name}
    print("routed expert slices the streamer found missing: " + ", ".join(
        f"{name.split('(')[1][:-1]} {min(v):.0%}-{max(v):.0%}" for name, v in misses.items()))


def flagship(folder: Path, tokens: int, profile: dict) -> None:
    """DeepSeekMoE 16B F16 on this machine's RAM: llama-bench, then shimmy-py streaming."""
    from shimmy_py.synthetic.synth import write
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "deepseek-moe-16b-f16.gguf"
    if not model.exists():
        write(model, preset="deepseek-moe-16b")
    size, slice_bytes = os.path.getsize(model), read_size(model)
    import psutil
    print(f"the flagship: {model.name}, {size / 2**30:.1f} GiB on a machine of "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB, page cache dropped before each run, 2 threads, "
          f"{tokens} tokens")
    with MemoryLimit(psutil.virtual_memory().total) as cg:          # the machine's own RAM; the cache dropped
        pred = predicted(cg, str(model), 2, 8 + tokens + 16)
        peer = [stock(cg, str(model), tokens, 2)]
        ours = [shimmy(cg, str(model), tokens, 2)]
        print(row("llama-bench", peer))
        print(row(f"shimmy-py, streamed ({STREAM_METHODS[0]})", ours, peer, pred, limit_of(ours, profile, slice_bytes)))
        traced = trace_random_text(cg, model, folder)
        with_profile = ["--expert-profile", str(traced)]
        pred = predicted(cg, str(model), 2, 8 + tokens + 16, with_profile)
        profiled = [shimmy(cg, str(model), tokens, 2, with_profile)]
        print(row("shimmy-py, streamed, with the profile", profiled, peer, pred,
                  limit_of(profiled, profile, slice_bytes)))
        proposal(cg, str(model), tokens, 1, folder, ours, compare=False)


def trace_random_text(cg, model: Path, folder: Path, n: int = 40) -> Path:
    """A routing profile (`shimmy-py trace --out`) of `n` random tokens' text,
    the kind of input the runs decode, made in the cgroup."""
    import numpy as np

    from shimmy_py import Model
    with Model(str(model), vocab_only=True) as vocab:
        text = vocab.detokenize(np.random.default_rng(11).integers(0, vocab.n_vocab, n).tolist())
    out = folder / f"{model.stem}-random-text.npz"
    run(cg, [*SHIMMY, "trace", str(model), "-p", text.replace("\n", " "), "-n", "1", "--threads", "2",
             "--out", str(out)])
    print(f"traced the routing of {n} random tokens' text into {out.name}")
    return out


def proposal(cg, model: str, tokens: int, rounds: int, folder: Path, streamed: list[dict],
             compare: bool = True) -> None:
    """The first whole file `plan` proposes in the cgroup's memory (the most
    precise type that fits), made by the command it prints (with its greedy
    agreement and perplexity against the model unless `compare` is off), then
    decoded in the same memory by llama-bench and shimmy-py."""
    ctx = str(8 + tokens + 16)
    done, _ = run(cg, [*SHIMMY, "plan", model, "--json", "--ctx", ctx], drop=False)
    whole = [p for p in json.loads(done.stdout).get("proposals", []) if p["layers"] is None]
    if not whole:
        print("plan proposed no smaller file for this memory")
        return
    fits = [p for p in whole if not p["streams"]]        # else the one predicted fastest
    p = fits[0] if fits else max(whole, key=lambda p: p["predicted_decode_tps"] or 0)
    out = folder / f"{Path(model).stem}-{p['type'].lower()}-experts.gguf"
    if not out.exists():
        q, _ = run(None, [*SHIMMY, "quantize", model, str(out), *p["quantize_args"], "--threads", "2",
                          *([] if compare else ["--no-compare"])])
        print("\n".join(f"  {line}" for line in q.stdout.strip().splitlines()))
    pred = predicted(cg, str(out), 2, 8 + tokens + 16)
    peer = [stock(cg, str(out), tokens, 2) for _ in range(rounds)]
    ours = [shimmy(cg, str(out), tokens, 2) for _ in range(rounds)]
    name = f"{p['type']} experts ({os.path.getsize(out) / 2**30:.2f} GiB{', streams' if p['streams'] else ''})"
    print(row(f"llama-bench, {name}", peer))
    print(row(f"shimmy-py, {name}", ours, peer, pred)
          + f"  x{statistics.median(r['tps'] for r in ours) / statistics.median(r['tps'] for r in streamed):.2f} "
            "the model streamed")
    warm = [stock(cg, str(out), tokens, 2, drop=False)], [shimmy(cg, str(out), tokens, 2, drop=False)]
    print(row(f"llama-bench, {p['type']} experts, warm", warm[0]))
    print(row(f"shimmy-py, {p['type']} experts, warm", warm[1], warm[0], pred))


if __name__ == "__main__":
    sys.exit(main())
