"""Where each server's CPU time goes under the 4-client load of
`benchmarks/side_by_side.py`: llama-server -np 4 and `shimmy-py serve
--parallel 4` on the bench model, the CPU seconds of every thread of each
server's process tree over 4 clients x 2 streamed requests of 64 tokens:
the busiest threads (as many as --threads: llama.cpp's decode threads)
and all the others (the process times, so that threads which ended
meanwhile count), beside the aggregate tokens/s.

    python benchmarks/server_cpu.py [--model models/bench.gguf] [--rounds 2] [--threads N]

The decode threads (llama.cpp's thread pool: as many as --threads) take
nearly all of it in both; what the rest of shimmy-py's threads take (its
HTTP layer, the worker's pipe and the Python engine loop) is what the
runtime adds per token.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess, measure  # noqa: E402
from side_by_side import servers  # noqa: E402

from shimmy_py import defaults  # noqa: E402


def thread_seconds(pid: int) -> tuple[dict, float]:
    """CPU seconds of every live thread of the process tree at `pid`, by
    (pid, thread id), and of the whole tree (threads that have ended too)."""
    out, total = {}, 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            for t in proc.threads():
                out[(proc.pid, t.id)] = t.user_time + t.system_time
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return out, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=defaults.threads())
    a = ap.parse_args()
    print("| round | server | aggregate tok/s | wall s | CPU s, decode threads | CPU s, all other threads |")
    print("|---|---|---|---|---|---|")
    for k in range(a.rounds):
        for name, argv, port in servers(a.model, a.threads, 1024, 4):
            with ServerProcess(argv, port) as srv:
                measure(srv.url, clients=4, requests_per_client=1, n_gen=16, prompt_tokens=64)   # warm
                (before, total0), t0 = thread_seconds(srv.proc.pid), time.perf_counter()
                m = measure(srv.url, clients=4, requests_per_client=2, n_gen=64, prompt_tokens=64)
                wall, (after, total1) = time.perf_counter() - t0, thread_seconds(srv.proc.pid)
            used = sorted((after[t] - before.get(t, 0.0) for t in after), reverse=True)
            decode = sum(used[:a.threads])
            rest = total1 - total0 - decode          # every other thread, those that ended meanwhile too
            print(f"| {k + 1} | {name} | {m['aggregate_tps']:.1f} | {wall:.1f} | {decode:.2f} | {rest:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
