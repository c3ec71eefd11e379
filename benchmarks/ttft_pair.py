"""Time to first token, llama-server against shimmy-py serve, request by request.

    python benchmarks/ttft_pair.py [--model models/bench.gguf] [--requests 16] [--against DIR ...]

Both servers run at once (-np 1 / --parallel 1, same threads and context);
each request goes to one and then the other (the order alternates), so the
paired differences cancel most of this machine's drift. Requests are the
side-by-side script's: a 32-word prompt, streamed /v1/completions, 2 tokens.
Prints both servers' TTFTs and the median paired difference.

`--against DIR` (a checkout of another commit, e.g. from `git worktree add
DIR COMMIT`) adds that checkout's shimmy-py serve to the same run, so two
versions are compared request by request rather than run after run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import paired_ttft  # noqa: E402
from side_by_side import servers  # noqa: E402

from shimmy_py.procs import free_port  # noqa: E402


def checkout_server(ours: list[str], port: int, checkout: Path) -> tuple[str, list[str], int]:
    """`ours` (shimmy-py serve's argv) run from another checkout's package, on `port`:
    started in that checkout, since `python -m` puts the working directory
    first on sys.path (from this one, this checkout's package would run)."""
    argv = list(ours)
    argv[argv.index("--port") + 1] = str(port)
    checkout = checkout.resolve()                # "." is named by its folder
    where = str(checkout)
    return f"serve at {checkout.name}", ["env", "-C", where, f"PYTHONPATH={where}", *argv], port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--against", type=Path, action="append", default=[], metavar="DIR",
                    help="another checkout's shimmy-py serve in the same run")
    a = ap.parse_args()
    configs = servers(a.model.resolve(), a.threads, 1024, 1)
    configs += [checkout_server(configs[1][1], free_port(), d) for d in a.against]
    ttft = paired_ttft(configs, a.requests)
    theirs = ttft["llama-server"]
    for name, values in ttft.items():
        print(f"{name:24} median {statistics.median(values):7.1f} ms:", " ".join(f"{v:.0f}" for v in values))
    for name, values in list(ttft.items())[1:]:
        diffs = [o - t for o, t in zip(values, theirs)]
        print(f"paired difference ({name} - llama-server): median {statistics.median(diffs):+.1f} ms, "
              f"range {min(diffs):+.1f} to {max(diffs):+.1f}")


if __name__ == "__main__":
    main()
