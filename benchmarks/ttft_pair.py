"""Time to first token, llama-server against shimmy-py serve, request by request.

    python benchmarks/ttft_pair.py [--model models/bench.gguf] [--requests 16]

Both servers run at once (-np 1 / --parallel 1, same threads and context);
each request goes to one and then the other (the order alternates), so the
paired differences cancel most of this machine's drift. Requests are the
side-by-side script's: a 32-word prompt, streamed /v1/completions, 2 tokens.
Prints both servers' TTFTs and the median paired difference.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=16)
    a = ap.parse_args()
    ttft = paired_ttft(servers(a.model, a.threads, 1024, 1), a.requests)
    for name, values in ttft.items():
        print(f"{name:16} median {statistics.median(values):7.1f} ms:", " ".join(f"{v:.0f}" for v in values))
    theirs, ours = ttft.values()
    diffs = [o - t for o, t in zip(ours, theirs)]
    print(f"paired difference (shimmy-py - llama-server): median {statistics.median(diffs):+.1f} ms, "
          f"range {min(diffs):+.1f} to {max(diffs):+.1f}")


if __name__ == "__main__":
    main()
