"""shimmy_py beside llama.cpp's own tools, in one run, on one model file, with
the same threads and placement; writes the ratios to docs/BENCHMARKS.md.

    python benchmarks/side_by_side.py [--model models/bench.gguf] [--threads N] [--quick]

The peer is stock llama.cpp (`native/build.sh --stock`: its CMake defaults and
-DGGML_RPC=ON, plus only what this machine cannot run), never a build with this
project's own choices.
1. llama-bench (pp P at depth 0, tg N at depth P) against `shimmy-py bench`
   (a P-token prompt, then N greedy tokens through the Python generation loop),
   -r repetitions each (default 4), over seven rounds, which goes first
   alternating; ratios within rounds, their median (the HTTP part too).
2. llama-server against `shimmy-py serve` over HTTP with the same client
   (benchmarks/http_client.py): time to first token and tokens/s with one
   client, aggregate tokens/s with 4 and 8 clients, --parallel = -np; and
   4 clients on both servers without batching (-np 1, --parallel 1). The
   servers compared are up at once and take turns, a block of requests
   each; the TTFT target is taken the same way, request by request.
3. Planning the DeepSeekMoE 16B table (shape-only file).
4. What tracing expert routing costs (benchmarks/trace_cost.py).
5. Speculative decoding beside llama-server's, mode by mode
   (benchmarks/spec_side_by_side.py).
The model is the `bench` synthetic preset (DeepSeekMoE layout, random weights).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess, measure, paired_ttft  # noqa: E402
from report import write_report  # noqa: E402
from spec_side_by_side import markdown as spec_markdown  # noqa: E402
from spec_side_by_side import spec_rounds  # noqa: E402
from spec_side_by_side import summary as spec_summary  # noqa: E402
from trace_cost import summary, trace_rounds  # noqa: E402

import shimmy_py  # noqa: E402
from shimmy_py.bench import run_bench  # noqa: E402
from shimmy_py.native import install as native  # noqa: E402
from shimmy_py.procs import free_port  # noqa: E402


def llama_bench(model: Path, p: int, n: int, reps: int, threads: int, mode: str = "stock") -> dict:
    """llama-bench of the `mode` build: "stock" is the peer (llama.cpp as users
    build it), "batch-invariant" shows what that build option costs."""
    tool = str(native.mode_tool(mode, "llama-bench"))
    out = {}
    for key, args in (("prefill_tps", ["-p", str(p), "-n", "0"]),
                      ("decode_tps", ["-p", "0", "-n", str(n), "-d", str(p)])):
        proc = subprocess.run([tool, "-m", str(model), "-r", str(reps), "-t", str(threads), "-o", "json", *args],
                              capture_output=True, text=True, timeout=3600, check=True)
        out[key] = json.loads(proc.stdout)[0]["avg_ts"]
    return out


def ours_bench(model: Path, p: int, n: int, reps: int, threads: int) -> dict:
    [r] = run_bench(str(model), ["gpu"], p, n, reps, threads)
    return {"prefill_tps": r.prefill_tps, "decode_tps": r.decode_tps}


def bench_rounds(model: Path, p: int, n: int, reps: int, threads: int, rounds: int) -> tuple[list, list, list]:
    """Stock llama-bench and shimmy_py alternately, `rounds` times, with the
    --batch-invariant build's llama-bench beside them when it is built. This
    machine's speed drifts by several percent over tens of seconds: ratios are
    taken within each round (adjacent runs) and summarised by their median.
    Which of the two runs first alternates from round to round, so that a
    drift within a round (or a cost of going first) favours neither."""
    theirs, ours, invariant = [], [], []
    with_invariant = bool(native.mode_info("batch-invariant"))
    for r in range(rounds):
        if r % 2 == 0:
            theirs.append(llama_bench(model, p, n, reps, threads))
            ours.append(ours_bench(model, p, n, reps, threads))
        else:
            ours.append(ours_bench(model, p, n, reps, threads))
            theirs.append(llama_bench(model, p, n, reps, threads))
        if with_invariant:
            invariant.append(llama_bench(model, p, n, reps, threads, "batch-invariant"))
    return theirs, ours, invariant


def servers(model: Path, threads: int, ctx: int, parallel: int):
    """(name, argv) of llama-server and shimmy-py serve with equal settings."""
    port_a, port_b = free_port(), free_port()
    # shimmy-py's sequences share one KV cache; llama-server's do with -kvu (its
    # default only when -np is not given), so both lay out the KV cache alike
    unified = ["--kv-unified"] if parallel > 1 else []
    llama = [str(native.mode_tool("stock", "llama-server")), "-m", str(model), "-c", str(ctx * parallel),
             "-np", str(parallel), *unified, "-t", str(threads), "--host", "127.0.0.1", "--port", str(port_a),
             "--no-webui"]
    ours = [sys.executable, "-m", "shimmy_py", "serve", "--model", str(model), "--ctx", str(ctx),
            "--parallel", str(parallel), "--threads", str(threads), "--port", str(port_b)]
    return [("llama-server", llama, port_a), ("shimmy-py serve", ours, port_b)]


def http_rounds(model: Path, threads: int, n_gen: int, rounds: int, per_client: int) -> dict:
    """TTFT and tokens/s with 1 client, aggregate tokens/s with 4 and 8 clients.
    The servers compared are up at once and take turns, a block of requests
    each per round, the order reversed every other round; a round's ratio
    compares blocks seconds apart, and every round's figures are kept."""
    runs: dict = {}
    for parallel in (1, 4, 8):
        configs = servers(model, threads, 1024, parallel)
        if parallel == 4:  # the same load on both servers without batching
            configs += [(name + (" -np 1" if name == "llama-server" else " --parallel 1"), argv, port)
                        for name, argv, port in servers(model, threads, 1024, 1)]
        # one client runs three times the rounds: the single stream's speed is a target, and its
        # blocks spread the most (a request is about a second on this machine)
        n_rounds = rounds * (3 if parallel == 1 else 1)
        with ExitStack() as stack:
            urls = [(name, stack.enter_context(ServerProcess(argv, port)).url) for name, argv, port in configs]
            for r in range(n_rounds):
                for name, url in (urls if r % 2 == 0 else urls[::-1]):
                    m = measure(url, clients=parallel, requests_per_client=per_client, n_gen=n_gen,
                                prompt_tokens=64, block=r)
                    runs.setdefault((name, parallel), []).append(m)
    return runs


def planning_time() -> float:
    from shimmy_py import PlacementOptions, make_plan
    path = shimmy_py.synth.write(ROOT / "models" / "deepseek-moe-16b-f16.gguf", "deepseek-moe-16b",
                                 shape_only=True)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        # a hypothetical box (a 24 GiB card, 64 GiB of RAM): the time must not depend on this machine's free RAM
        make_plan(path, PlacementOptions(fit=True, vram_budget="8GiB", target_vram="24GiB",
                                         device_capacity="CPU=64GiB"))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor())
    return (f"{cpu}, {psutil.cpu_count(logical=False)} cores / {psutil.cpu_count()} threads, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, llama.cpp from {native.build_info().get('source', '?')}")


def builds() -> list[str]:
    """What each compared build is, from the VERSION file native/build.sh wrote."""
    mine = native.build_info()
    lines = [f"- shimmy_py's libraries ({mine.get('mode', '?')} build): cmake {mine.get('cmake_args', '?')}"]
    for mode, what in (("stock", "the peer, llama.cpp as users build it"),
                       ("batch-invariant", "`native/build.sh --batch-invariant`")):
        info = native.mode_info(mode)
        if info:
            lines.append(f"- {mode} ({what}): cmake {info.get('cmake_args', '?')}")
    off = mine.get("isa_off")
    if off:
        lines.append(f"- turned off in every build because this machine cannot run them as built here: {off} "
                     "(native/build.sh's probe)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False))
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=4, help="repetitions per tool and round (llama-bench's -r)")
    ap.add_argument("--quick", action="store_true", help="fewer tokens and requests (a smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    a = ap.parse_args()
    if a.quick:
        a.p, a.n, a.r = 128, 32, 2
    if not a.model.exists():
        print(f"writing {a.model} (bench preset)", file=sys.stderr)
        shimmy_py.synth.write(a.model, "bench")
    t0 = time.time()
    rounds = 1 if a.quick else 7
    theirs, ours, invariant = bench_rounds(a.model, a.p, a.n, a.r, a.threads, rounds)
    http = http_rounds(a.model, a.threads, 32 if a.quick else 64, rounds, 1 if a.quick else 2)
    ttft = paired_ttft(servers(a.model, a.threads, 1024, 1), 6 if a.quick else 80)
    plan_s = planning_time()
    trace = summary(trace_rounds(a.model, a.p, a.n, a.threads, rounds))
    spec_n, spec_r = (64, 1) if a.quick else (256, 5)
    spec = spec_summary(spec_rounds(a.threads, spec_n, spec_r))
    text = write_report(a.out, machine(), builds(), vars(a), theirs, ours, invariant, http, ttft, plan_s,
                        time.time() - t0, trace, (spec, spec_markdown(spec, spec_n, spec_r)))
    print(text)


if __name__ == "__main__":
    main()
