"""What serving costs under the 4-client load of `benchmarks/side_by_side.py`:
shimmy-py's batching engine driven in this process (no HTTP, no worker
process, no pipe) beside stock llama-server -np 4 and `shimmy-py serve
--parallel 4`, the same requests to each.

    python benchmarks/serving_cost.py [--model models/bench.gguf] [--rounds 12] [--threads N] [--clients 4]
                                      [--against DIR ...]

A block is 4 clients (--clients; the servers run with as many slots) x 2
requests of 64 greedy tokens after the side-by-side prompts (the engine's
clients are threads that tokenize the same text, submit and run the
generation loop, as the worker does). The engine and the servers are up at
once and take turns, a block each per round, the order reversed every
other round; each round's aggregate tokens/s is divided by llama-server's
of the same round, and the table gives the medians. The engine's row
against llama-server is the batching engine's own speed; the serve row
against the engine's is what the server around it (HTTP, the worker's
process and pipe, the request and stream threads) costs. `--against DIR` (a
checkout of another commit, `git worktree add DIR COMMIT`) adds that
checkout's serve to the same rounds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess, measure, run_block  # noqa: E402
from side_by_side import servers  # noqa: E402
from ttft_pair import checkout_server  # noqa: E402

from shimmy_py import defaults  # noqa: E402
from shimmy_py.generation.engine import Engine  # noqa: E402
from shimmy_py.generation.loop import drain, run  # noqa: E402
from shimmy_py.generation.model import Model  # noqa: E402
from shimmy_py.generation.sampling import SamplingParams  # noqa: E402
from shimmy_py.procs import free_port  # noqa: E402

PER_CLIENT, N_GEN, PROMPT_TOKENS, CTX = 2, 64, 64, 1024


def engine_block(model: Model, engine: Engine, clients: int, block: int) -> float:
    """One block through the engine in this process; aggregate tokens/s."""
    counts: list[int] = []
    lock = threading.Lock()

    def request(text: str) -> None:
        source = engine.submit(model.tokenize(text), SamplingParams(temperature=0), N_GEN)
        done = drain(run(source, model.vocab, N_GEN))
        with lock:
            counts.append(done.completion_tokens)
    wall = run_block(clients, PER_CLIENT, PROMPT_TOKENS, block, request)
    return sum(counts) / wall


def paired(xs: list[float], ys: list[float]) -> list[float]:
    """Round by round, xs over ys."""
    return [x / y for x, y in zip(xs, ys)]


def spread(ratios: list[float]) -> str:
    """The median, and the range in brackets."""
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=defaults.threads())
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients, and the servers' slots")
    ap.add_argument("--against", type=Path, action="append", default=[], metavar="DIR",
                    help="another checkout's shimmy-py serve in the same rounds")
    a = ap.parse_args()
    configs = servers(a.model.resolve(), a.threads, CTX, a.clients)
    configs += [checkout_server(configs[1][1], free_port(), d) for d in a.against]
    runs: dict[str, list[float]] = {}
    with ExitStack() as stack:
        model = stack.enter_context(Model(a.model, n_ctx=CTX * a.clients, n_seq_max=a.clients, n_threads=a.threads))
        engine = Engine(model.context, model.vocab, cache_bytes=defaults.CACHE_RAM)
        stack.callback(engine.close)
        turns = [("shimmy-py engine, in this process", lambda b: engine_block(model, engine, a.clients, b))]
        for name, argv, port in configs:
            url = stack.enter_context(ServerProcess(argv, port)).url
            turns.append((name, lambda b, url=url: measure(url, a.clients, PER_CLIENT, N_GEN, PROMPT_TOKENS,
                                                           block=b)["aggregate_tps"]))
        for _, turn in turns:                  # warm: a first block of each, not counted
            turn(0)
        for r in range(a.rounds):
            for name, turn in turns if r % 2 == 0 else turns[::-1]:
                runs.setdefault(name, []).append(turn(r + 1))
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in runs.items()), file=sys.stderr)
    peer, ours, engine_name = configs[0][0], configs[1][0], turns[0][0]
    print(f"{a.rounds} rounds of {a.clients} clients x {PER_CLIENT} requests of {N_GEN} tokens "
          f"(streamed over HTTP to the servers), {a.threads} threads; aggregate tokens/s\n")
    print(f"| | median tok/s | median ratio to {peer} | rounds above it | median ratio to the engine |")
    print("|---|---|---|---|---|")
    for name, tps in runs.items():
        to_peer = paired(tps, runs[peer])
        print(f"| {name} | {statistics.median(tps):.1f} | {spread(to_peer)} | {sum(x > 1 for x in to_peer)} of "
              f"{len(tps)} | {statistics.median(paired(tps, runs[engine_name])):.3f} |")
    for name, _, _ in configs[2:]:              # this checkout's serve, against each other checkout's
        ratios = paired(runs[ours], runs[name])
        print(f"\n{ours} / {name}: median {spread(ratios)}, above 1 in {sum(x > 1 for x in ratios)} of "
              f"{len(ratios)} rounds")


if __name__ == "__main__":
    main()
