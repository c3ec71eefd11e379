"""Two models computing at once on one CPU: what oversubscribing the cores
costs, and what sharing them (shimmy_py/serving/threads.py) gives back.

    python benchmarks/concurrent_models.py [--model models/bench.gguf] [--rounds 3] [--threads N]

1. Stock llama-bench (decode, 64 tokens) of the model: alone with N threads
   (N: the physical cores), two runs at once with N threads each, and two
   at once with N/2 each; tokens/s per run, medians over rounds.
2. llama-server's router (`--models-dir`, `--models-max 2`) against
   `shimmy-py serve --model-dirs --max-models 2`, both with N threads per
   model, serving the model and a copy with other random weights (the
   bench preset, seed 7): each round starts a server,
   loads both models, then streams one greedy 64-token completion from
   each at once; tokens/s per request and the two together, medians.
The servers alternate within each round, each started fresh.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess, one_request  # noqa: E402

import shimmy_py  # noqa: E402
from shimmy_py import defaults  # noqa: E402
from shimmy_py.native import install as native  # noqa: E402
from shimmy_py.procs import free_port  # noqa: E402

N_GEN = 64


def bench_at_once(model: Path, threads: list[int]) -> list[float]:
    """Decode tokens/s of llama-bench runs started together, one per entry of `threads`."""
    tool = str(native.mode_tool("stock", "llama-bench"))
    procs = [subprocess.Popen([tool, "-m", str(model), "-r", "3", "-t", str(t), "-o", "json", "-p", "0",
                               "-n", str(N_GEN)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for t in threads]
    return [json.loads(p.communicate(timeout=1800)[0])[0]["avg_ts"] for p in procs]


def servers(folder: Path, threads: int) -> list[tuple[str, list[str], int]]:
    port_a, port_b = free_port(), free_port()
    llama = [str(native.mode_tool("stock", "llama-server")), "--models-dir", str(folder), "--models-max", "2",
             "-c", "1024", "-np", "1", "-t", str(threads), "--host", "127.0.0.1", "--port", str(port_a),
             "--no-webui"]
    ours = [sys.executable, "-m", "shimmy_py", "serve", "--model-dirs", str(folder), "--max-models", "2",
            "--ctx", "1024", "--parallel", "1", "--threads", str(threads), "--port", str(port_b)]
    return [("llama-server (router)", llama, port_a), ("shimmy-py serve", ours, port_b)]


def both_at_once(url: str) -> list[float]:
    """Tokens/s (request to last token) of one streamed completion per model, started together."""
    for name in ("a", "b"):                  # loaded and warm before the measured pair
        one_request(url, "Warm up", 2, name)
    out: dict = {}
    users = [threading.Thread(target=lambda n=name: out.__setitem__(n, one_request(url, "Tell me", N_GEN, n)))
             for name in ("a", "b")]
    for u in users:
        u.start()
    for u in users:
        u.join()
    return [out[n]["tokens"] / out[n]["wall_s"] for n in ("a", "b")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=defaults.threads())
    a = ap.parse_args()
    t, half = a.threads, max(1, a.threads // 2)
    runs: dict = {}
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        (folder / "a.gguf").symlink_to(a.model.resolve())
        shimmy_py.synth.write(folder / "b.gguf", "bench", seed=7)    # the same shape, other weights: another model
        for _ in range(a.rounds):
            runs.setdefault(f"llama-bench alone, {t} threads", []).append(bench_at_once(a.model, [t]))
            runs.setdefault(f"llama-bench, two at once, {t} threads each", []).append(bench_at_once(a.model, [t, t]))
            runs.setdefault(f"llama-bench, two at once, {half} thread{'s' if half > 1 else ''} each", []).append(
                bench_at_once(a.model, [half, half]))
            for name, argv, port in servers(folder, t):
                with ServerProcess(argv, port) as srv:
                    runs.setdefault(f"{name}, two models at once, --threads {t}", []).append(both_at_once(srv.url))
    print(f"{a.model.name}, {N_GEN} tokens, {a.rounds} rounds, medians (tokens/s)\n")
    print("| run | each | together |\n|---|---|---|")
    for name, rows in runs.items():
        each = statistics.median(x for row in rows for x in row)
        print(f"| {name} | {each:.1f} | {statistics.median(sum(row) for row in rows):.1f} |")


if __name__ == "__main__":
    main()
