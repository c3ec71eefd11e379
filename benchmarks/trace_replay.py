"""Many models, many conversations: one replayed trace against llama-server's
router mode and `shimmy-py serve`, each serving every model of one folder.

    python benchmarks/trace_replay.py [--rounds 5] [--threads N] [--quick] [--out docs/TRACE.md]

The trace: two models of different sizes (the `tiny` preset, 55 MB, and the
`bench` preset, 1.5 GB: DeepSeekMoE layouts, random weights) and 8
conversations of 4 turns, alternating between the models, each turn's prompt
the whole conversation so far plus a new user line, 16 greedy tokens per
turn, a seeded think-time of 0.5-2.5 s between turns and staggered starts.
Each server holds both models (`--models-max 2` / `--max-models 2`) with 2
slots each (`-np 2 -kvu` / `--parallel 2`), 4 slots in all for the 8
conversations, so conversations lose their slot and come back: each server's
default host-RAM conversation cache (`--cache-ram`, 8192 MiB in both) is what
decides how much of a returning prompt is decoded again. Both servers start
empty, so the first request for each model includes its load.

Reported per server (all rounds' requests): time to first token p50/p95,
model loads (distinct model processes seen: llama-server's child instances,
shimmy-py's workers), and the peak resident memory of the whole process tree
(sampled every 0.1 s). The peer is stock llama.cpp (`native/build.sh --stock`).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import WORDS, ServerProcess, one_request  # noqa: E402

import shimmy_py  # noqa: E402
from shimmy_py.native import install as native  # noqa: E402
from shimmy_py.procs import free_port  # noqa: E402

MODELS = ("small", "large")
N_CONVERSATIONS, TURNS, N_GEN, SLOTS, CTX = 8, 4, 16, 2, 2048


def model_folder(work: Path) -> Path:
    """`small` (tiny preset) and `large` (bench preset, models/bench.gguf reused) in one folder."""
    folder = work / "models"
    folder.mkdir(parents=True, exist_ok=True)
    bench = ROOT / "models" / "bench.gguf"
    if not bench.exists():
        shimmy_py.synth.write(bench, "bench")
    if not (folder / "large.gguf").exists():
        (folder / "large.gguf").symlink_to(bench)
    if not (folder / "small.gguf").exists():
        shimmy_py.synth.write(folder / "small.gguf", "tiny", seed=5)
    return folder


def servers(folder: Path, threads: int) -> list[tuple[str, list[str], int]]:
    """(name, argv, port) of both servers, equal settings."""
    port_a, port_b = free_port(), free_port()
    llama = [str(native.mode_tool("stock", "llama-server")), "--models-dir", str(folder), "--models-max", "2",
             "-c", str(CTX * SLOTS), "-np", str(SLOTS), "-kvu", "-t", str(threads), "--host", "127.0.0.1",
             "--port", str(port_a), "--no-webui"]
    ours = [sys.executable, "-m", "shimmy_py", "serve", "--model-dirs", str(folder), "--max-models", "2",
            "--ctx", str(CTX), "--parallel", str(SLOTS), "--threads", str(threads), "--port", str(port_b)]
    return [("llama-server (router)", llama, port_a), ("shimmy-py serve", ours, port_b)]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def conversation(url: str, i: int, seed: int, results: list, lock: threading.Lock) -> None:
    """One user: TURNS turns with think-time between, the history growing."""
    rng = random.Random(seed * 100 + i)
    model = MODELS[i % 2]
    time.sleep(rng.uniform(0, 2))
    history = ""
    for turn in range(TURNS):
        history += f"User {i}: {_words(rng, 30)}\nAssistant:"
        r = one_request(url, history, N_GEN, model)
        history += r["text"] + "\n"
        with lock:
            results.append({"conversation": i, "turn": turn, "model": model, "ttft_s": r["ttft_s"],
                            "prompt": r["prompt_tokens"] or 0, "cached": r["cached_tokens"] or 0})
        time.sleep(rng.uniform(0.5, 2.5))


class TreeMonitor:
    """Samples a process tree: peak total RSS and every model process seen."""

    def __init__(self, pid: int, marker: str):
        self.root, self.marker = psutil.Process(pid), marker
        self.peak_rss, self.model_pids = 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                    if p is not self.root and self.marker in " ".join(p.cmdline()):
                        self.model_pids.add(p.pid)
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, total)
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def replay(name: str, argv: list[str], port: int, seed: int) -> dict:
    """The trace on one freshly started server."""
    marker = "llama-server" if name.startswith("llama") else "shimmy_py.serving.worker"
    with ServerProcess(argv, port) as srv:
        monitor = TreeMonitor(srv.proc.pid, marker)
        results: list = []
        lock = threading.Lock()
        users = [threading.Thread(target=conversation, args=(srv.url, i, seed, results, lock))
                 for i in range(N_CONVERSATIONS)]
        t0 = time.perf_counter()
        for u in users:
            u.start()
        for u in users:
            u.join()
        wall = time.perf_counter() - t0
        monitor.stop()
    if len(results) != N_CONVERSATIONS * TURNS:
        raise RuntimeError(f"{name}: {len(results)} of {N_CONVERSATIONS * TURNS} requests answered")
    return {"ttft": [r["ttft_s"] * 1000 for r in results],
            "later": [r["ttft_s"] * 1000 for r in results if r["turn"] > 0],   # past the loads: returning prompts
            "loads": len(monitor.model_pids), "peak_rss": monitor.peak_rss, "wall_s": wall,
            "prompt": sum(r["prompt"] for r in results), "cached": sum(r["cached"] for r in results)}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def report(runs: dict, rounds: int, threads: int) -> str:
    lines = ["# A replayed trace: many models, many conversations", "",
             "Written by `benchmarks/trace_replay.py` (part of `make bench`); rerun it to replace this file. "
             "Its docstring describes the trace. Random-weight models: the text is gibberish, the compute real.",
             "", f"- {rounds} rounds (the servers alternate, each started fresh), threads {threads}, "
             f"{N_CONVERSATIONS} conversations x {TURNS} turns, {N_GEN} tokens per turn, {2 * SLOTS} slots in all",
             "", "| server | requests | TTFT p50 ms | TTFT p95 ms | turns 2-4: p50 ms | turns 2-4: p95 ms | "
             "model loads per round | peak RSS GiB | prompt tokens reused |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rs in runs.items():
        ttft, later = [t for r in rs for t in r["ttft"]], [t for r in rs for t in r["later"]]
        lines.append(f"| {name} | {len(ttft)} | {statistics.median(ttft):.1f} | {p95(ttft):.1f} | "
                     f"{statistics.median(later):.1f} | {p95(later):.1f} | "
                     f"{'/'.join(str(r['loads']) for r in rs)} | {max(r['peak_rss'] for r in rs) / 2**30:.2f} | "
                     f"{100 * sum(r['cached'] for r in rs) / max(1, sum(r['prompt'] for r in rs)):.0f}% |")
    lines += ["", "The first turn of each conversation meets its model loading (both servers start empty and "
              "load on demand); turns 2-4 are conversations coming back to a server that may have given "
              "their slot away. Prompt tokens reused: the share of all prompt tokens each server reported as "
              "cached (`usage.prompt_tokens_details.cached_tokens`), not decoded again."]
    (theirs, t_runs), (ours, o_runs) = runs.items()
    t95, o95 = p95([t for r in t_runs for t in r["ttft"]]), p95([t for r in o_runs for t in r["ttft"]])
    t_loads, o_loads = max(r["loads"] for r in t_runs), max(r["loads"] for r in o_runs)
    lines += ["", f"Target: p95 TTFT at or below llama-server's ({o95:.1f} vs {t95:.1f} ms: "
              f"{'met' if o95 <= t95 else '**missed**'}), with fewer or equal loads ({o_loads} vs {t_loads}: "
              f"{'met' if o_loads <= t_loads else '**missed**'}), within the same memory (peak RSS above)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one round (a smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "TRACE.md")
    a = ap.parse_args()
    rounds = 1 if a.quick else a.rounds
    with tempfile.TemporaryDirectory() as tmp:
        configs = servers(model_folder(Path(tmp)), a.threads)
        runs: dict = {name: [] for name, _, _ in configs}
        for k in range(rounds):
            for name, argv, port in (configs if k % 2 == 0 else configs[::-1]):
                runs[name].append(replay(name, argv, port, seed=k))
    text = report(runs, rounds, a.threads)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
