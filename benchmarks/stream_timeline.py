"""Where a streamed token's time goes, as root, in a memory cgroup: the
bench preset decoded with `--stream-method own`, whose streamer waits for a
layer's reads before the graph goes on, so the time it waits is the time
the file's reads took; the rest of a token is computing. Beside it, the
same model decoded in RAM (nothing streams) at the same threads: its time a
token is what computing costs when nothing is read.

    python benchmarks/stream_timeline.py [--limit 0.74GiB] [--rounds 3] [--tokens 32] [--model PATH]

Each decode step is fed a random token, as llama-bench's generation test
feeds them. Per token it prints: the whole time, the time waiting for reads, the bytes
read and the rate they came at while waited for, and the rest. It then
prints what bounds issue 35's "share of the file-bandwidth limit" (the
decode speed over the one at which the token's reads alone, at calibrate's
rate, would take all the time): with reads that cannot start before a
layer's router has chosen, a token costs at least its compute plus its
reads, so the share is at most reads / (reads + compute).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shimmy_py.placement.predict import file_rate  # noqa: E402
from shimmy_py.placement.profile import load_profile  # noqa: E402


def run(model: str, tokens: int, streamed: bool) -> dict:
    """One decode in this process: seconds a token, and, streamed, seconds waited and bytes read a token."""
    from shimmy_py import Model
    from shimmy_py.bench import fed_random, random_prompt
    from shimmy_py.generation.loop import drain
    from shimmy_py.placement.options import PlacementOptions
    placement = PlacementOptions(stream_method="own") if streamed else PlacementOptions(ram_budget=1 << 40)
    with Model(model, n_ctx=64, n_threads=2, placement=placement) as m:
        streamer = m.streamer
        waited = [0.0]
        if streamer is not None:
            call = streamer.__call__

            def timed(name, weights, ids):
                t = time.perf_counter()
                try:
                    return call(name, weights, ids)
                finally:
                    waited[0] += time.perf_counter() - t
            tap = m.context.native.tap
            tap.kept = [(timed if s is streamer else s, n) for s, n in tap.kept]
        drain(m.stream_tokens(random_prompt(m, 8, 0), max_tokens=2, temperature=0))   # warm-up, as bench does
        m.reset()
        start = []

        def at_first(_):                          # decode only: the waits and reads after the prompt
            waited[0] = 0.0
            start.append(streamer.stats.bytes_read if streamer is not None else 0)
        c = fed_random(m, random_prompt(m, 8, 1), tokens + 1, 1, at_first)   # as llama-bench feeds
        n = c.completion_tokens - 1
        read = (streamer.stats.bytes_read - start[0]) if streamer is not None else 0
    return {"token_s": 1 / c.tokens_per_s, "wait_s": waited[0] / n, "read": read / n, "tokens": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", default="0.74GiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default=None)
    ap.add_argument("--one", choices=("ram", "streamed"), help=argparse.SUPPRESS)   # a run in a child process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(args.model, args.tokens, args.one == "streamed")))
        return 0
    profile = load_profile()
    if profile is None:
        print("no machine profile: run `shimmy-py calibrate` first", file=sys.stderr)
        return 1
    from shimmy_py.procs import MemoryLimit
    from shimmy_py.sizes import parse_size
    from shimmy_py.synthetic.synth import write
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(Path(tmp.name) / "bench.gguf")
    if not args.model:
        write(model, preset="bench")
    rows: dict[str, list[dict]] = {"ram": [], "streamed": []}
    argv = [sys.executable, __file__, "--model", model, "--tokens", str(args.tokens), "--one"]
    with MemoryLimit(parse_size(args.limit)) as cg:
        for _ in range(args.rounds):
            done = subprocess.run([*argv, "ram"], capture_output=True, text=True, cwd=ROOT, timeout=600)
            rows["ram"].append(json.loads(done.stdout.strip().splitlines()[-1]))
            done, _ = cg.run([*argv, "streamed"], cwd=ROOT)
            if done.returncode:
                raise RuntimeError(done.stderr[-800:])
            rows["streamed"].append(json.loads(done.stdout.strip().splitlines()[-1]))
    med = {k: {f: statistics.median(r[f] for r in runs) for f in ("token_s", "wait_s", "read")}
           for k, runs in rows.items()}
    ram, st = med["ram"], med["streamed"]
    slice_bytes = _slice(model)
    rate = file_rate(profile, slice_bytes)
    print(f"{Path(model).name}: in RAM, and streamed (own) in a {args.limit} cgroup; 2 threads, {args.tokens} "
          f"tokens, {args.rounds} rounds, medians")
    print(f"in RAM: {ram['token_s'] * 1e3:.1f} ms a token")
    print(f"streamed: {st['token_s'] * 1e3:.1f} ms a token; waiting for reads {st['wait_s'] * 1e3:.1f} ms "
          f"({st['read'] / 2**20:.1f} MiB, at {st['read'] / st['wait_s'] / 1e9:.2f} GB/s); the rest "
          f"{(st['token_s'] - st['wait_s']) * 1e3:.1f} ms")
    at_rate = st["read"] / rate
    print(f"the same reads at calibrate's rate ({rate / 1e9:.2f} GB/s, {slice_bytes >> 10} KiB by 8 readers): "
          f"{at_rate * 1e3:.1f} ms")
    print(f"share of the file-bandwidth limit: {at_rate / st['token_s']:.0%}; at most "
          f"{at_rate / (at_rate + ram['token_s']):.0%} if a token cost its compute in RAM plus its reads "
          "at that rate, none overlapping")
    return 0


def _slice(model: str) -> int:
    from shimmy_py.gguf_io.reader import read_header
    return next(t.nbytes // t.shape[2] for t in read_header(model).tensors if "_exps." in t.name)


if __name__ == "__main__":
    sys.exit(main())
