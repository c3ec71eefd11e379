"""Where a streamed time to first token goes: llama-server and `shimmy-py
serve` (both up at once, -np 1 / --parallel 1, the side-by-side settings),
each asked alternately for a streamed completion of N tokens (its time to the
first text) and a whole 1-token completion (its wall time). Equal whole times
and unequal streamed ones put a gap on the streaming path, not in the compute.

    python benchmarks/stream_vs_whole.py [--model models/bench.gguf] [-n 2] [--requests 24]
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess, one_request, prompt  # noqa: E402
from side_by_side import servers  # noqa: E402


def whole(url: str, text: str) -> float:
    """Wall time (ms) of a non-streamed 1-token completion."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps({"prompt": text, "max_tokens": 1, "temperature": 0}),
                 {"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.close()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bench.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=2, help="tokens of the streamed request")
    ap.add_argument("--requests", type=int, default=24)
    a = ap.parse_args()
    with ExitStack() as stack:
        urls = {name: stack.enter_context(ServerProcess(argv, port)).url
                for name, argv, port in servers(a.model, a.threads, 1024, 1)}
        for url in urls.values():
            one_request(url, prompt(-1, 8), 4)   # warm-up
        res = {name: {"stream": [], "whole": []} for name in urls}
        for i in range(a.requests):
            for name, url in (list(urls.items()) if i % 2 else list(urls.items())[::-1]):
                res[name]["stream"].append(one_request(url, prompt(i, 32), a.n)["ttft_s"] * 1000)
                res[name]["whole"].append(whole(url, prompt(i + 1000, 32)))
    for name, r in res.items():
        print(f"{name:16} streamed ({a.n} tokens) TTFT median {statistics.median(r['stream']):.1f} ms, "
              f"whole 1-token wall median {statistics.median(r['whole']):.1f} ms")


if __name__ == "__main__":
    main()
