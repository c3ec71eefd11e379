"""One HTTP client for both servers: streamed /v1/completions requests,
time to first token, per-request and aggregate tokens/s."""
from __future__ import annotations

import http.client
import json
import random
import statistics
import threading
import time
import urllib.request
from contextlib import ExitStack

from shimmy_py.procs import ServerProcess  # noqa: F401  (side_by_side.py and trace_replay.py import it from here)

WORDS = ("expert router token layer memory shared gate attention value key cache batch model weight "
         "sparse dense shard device tensor stream").split()


def prompt(i: int, n_words: int) -> str:
    rng = random.Random(i)
    return f"Request {i}: " + " ".join(rng.choice(WORDS) for _ in range(n_words))


def one_request(url: str, text: str, n_gen: int, model: str | None = None) -> dict:
    """Streams one completion (of `model`, where a server serves several);
    returns ttft_s, tokens, tokens_per_s, wall_s and the text."""
    host, port = url.removeprefix("http://").split(":")
    request = {"prompt": text, "max_tokens": n_gen, "temperature": 0, "stream": True,
               "stream_options": {"include_usage": True}}
    if model is not None:
        request["model"] = model
    body = json.dumps(request)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{url}: HTTP {resp.status}: {resp.read()[:300]!r}")
    t_first, pieces, usage, out = None, 0, None, []
    for raw in resp:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[5:])
        usage = chunk.get("usage") or usage
        choices = chunk.get("choices") or []
        if choices and choices[0].get("text"):
            out.append(choices[0]["text"])
            pieces += 1
            t_first = t_first or time.perf_counter()
    t_end = time.perf_counter()
    conn.close()
    tokens = (usage or {}).get("completion_tokens", pieces)
    decode_s = t_end - (t_first or t_end)
    return {"ttft_s": (t_first or t_end) - t0, "tokens": tokens, "wall_s": t_end - t0,
            "tokens_per_s": (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0, "text": "".join(out),
            "prompt_tokens": (usage or {}).get("prompt_tokens"),
            "cached_tokens": ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens")}


def engine_seconds(url: str) -> tuple[float, float] | None:
    """shimmy-py's (engine step, inside llama_decode) seconds from /metrics;
    None for a server without those counters."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("shimmy_engine_step_seconds_total ", "shimmy_engine_decode_seconds_total ")):
            name, value = line.split()
            values[name] = float(value)
    if len(values) != 2:
        return None
    return values["shimmy_engine_step_seconds_total"], values["shimmy_engine_decode_seconds_total"]


def run_block(clients: int, requests_per_client: int, prompt_tokens: int, block: int, request) -> float:
    """`clients` threads, each calling `request(text)` for its prompts back to
    back; the wall seconds until all are done. `block` numbers the prompts:
    blocks with different numbers send different prompts."""
    def client(c: int) -> None:
        for k in range(requests_per_client):
            request(prompt(block * 100_000 + c * 1000 + k, prompt_tokens // 2))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure(url: str, clients: int, requests_per_client: int, n_gen: int, prompt_tokens: int,
            block: int = 0) -> dict:
    """`clients` threads, each sending requests back to back; medians and aggregate,
    and for shimmy-py the share of engine time spent outside llama_decode.
    `block` numbers the prompts: calls with different blocks send different
    prompts, so a server kept up between calls finds none of them cached."""
    one_request(url, prompt(-1, 8), 4)  # warm-up
    before = engine_seconds(url)
    results: list[dict] = []
    lock = threading.Lock()

    def request(text: str) -> None:
        r = one_request(url, text, n_gen)
        with lock:
            results.append(r)
    wall = run_block(clients, requests_per_client, prompt_tokens, block, request)
    after = engine_seconds(url)
    outside = None
    if before and after and after[0] > before[0]:
        outside = 1 - (after[1] - before[1]) / (after[0] - before[0])
    return {"clients": clients, "requests": len(results), "outside_decode": outside,
            "ttft_ms": statistics.median(r["ttft_s"] for r in results) * 1000,
            "request_tps": statistics.median(r["tokens_per_s"] for r in results),
            "aggregate_tps": sum(r["tokens"] for r in results) / wall}


def paired_ttft(configs: list[tuple[str, list[str], int]], requests: int) -> dict[str, list[float]]:
    """Time to first token (ms) of each server in `configs` ((name, argv, port)),
    all up at once, request by request: each prompt goes to every server in
    turn, the order alternating, so paired differences cancel the machine's
    drift. Prompts as in measure() (32 words), 2 tokens generated."""
    ttft: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    with ExitStack() as stack:
        urls = [(name, stack.enter_context(ServerProcess(argv, port)).url) for name, argv, port in configs]
        for _, url in urls:
            one_request(url, prompt(-1, 8), 4)  # warm-up
        for i in range(requests):
            for name, url in (urls if i % 2 == 0 else urls[::-1]):
                ttft[name].append(one_request(url, prompt(i, 32), 2)["ttft_s"] * 1000)
    return ttft
