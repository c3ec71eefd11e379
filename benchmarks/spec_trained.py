"""n-gram speculation on a model's natural output (docs/SPECULATIVE.md): the
trained stdlib model continuing Python it never saw, beside a `looper` of
the same shape and vocabulary (random layers, greedy output that repeats a
24-token loop: the best case), on stock llama-server and shimmy-py serve.

    python benchmarks/spec_trained.py [--rounds 3] [-n 256] [--peer stock]

Prompts: the first 48 tokens of each held-out file (training/heldout/).
Each model, each mode (none, ngram-simple at llama.cpp's defaults), greedy
and sampled (temperature 0.8, seed 1: speculation stays lossless, the draft
kept only where the sampler picks it), one client, non-streamed
/v1/completions; a fresh server per run, which server goes first
alternating from round to round. Per row: tok/s (the median over rounds of
the prompts' total tokens over their total time), drafts kept of drafted,
each server's speedup over its own plain decoding, shimmy-py over
llama-server.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from http_client import ServerProcess  # noqa: E402
from spec_side_by_side import servers  # noqa: E402

from training import corpus  # noqa: E402

TRAINED = corpus.MODEL
LOOPER = ROOT / "models" / "stdlib-loop.gguf"
SAMPLINGS = {"greedy": {"temperature": 0}, "T=0.8": {"temperature": 0.8, "seed": 1}}


def write_looper() -> Path:
    """A looper of the trained model's shapes and tokenizer, F16 as it is."""
    from gguf import GGMLQuantizationType
    from routing_trained import shape_of

    from shimmy_py.synthetic.behaviours import looper
    if not LOOPER.exists():
        looper(LOOPER, shape=shape_of(TRAINED), dtype=GGMLQuantizationType.F16, vocab=TRAINED)
    return LOOPER


def prompts(n_tokens: int = 48) -> list[str]:
    from shimmy_py import Model
    with Model(TRAINED, vocab_only=True) as m:
        return [m.detokenize(m.tokenize(corpus.read(corpus.HELDOUT_DIR / f), add_special=False)[:n_tokens])
                for f in corpus.HELDOUT]


def complete(url: str, prompt: str, n: int, sampling: dict) -> dict:
    body = json.dumps({"prompt": prompt, "max_tokens": n, **sampling}).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=1800) as r:
        out = json.loads(r.read())
    timings = out.get("timings") or {}
    return {"wall": time.perf_counter() - t0, "tokens": out["usage"]["completion_tokens"],
            "text": out["choices"][0]["text"], "drafted": timings.get("draft_n", 0),
            "accepted": timings.get("draft_n_accepted", 0)}


def run(url: str, texts: list[str], n: int, sampling: dict) -> dict:
    done = [complete(url, t, n, sampling) for t in texts]
    return {"tps": sum(d["tokens"] for d in done) / sum(d["wall"] for d in done), "texts": [d["text"] for d in done],
            "drafted": sum(d["drafted"] for d in done), "accepted": sum(d["accepted"] for d in done)}


def rounds(threads: int, n: int, count: int, peer: str) -> dict:
    texts = prompts()
    models = {"stdlib-moe (trained)": TRAINED, "looper (same shape)": write_looper()}
    out: dict = {}
    for r in range(count):
        for model, path in models.items():
            for mode in ("none", "ngram-simple"):
                pair = servers(path, threads, 1024, mode, peer)
                for name, argv, port in (pair if r % 2 == 0 else pair[::-1]):
                    with ServerProcess(argv, port) as srv:
                        complete(srv.url, texts[0], 8, SAMPLINGS["greedy"])          # warm-up
                        for label, sampling in SAMPLINGS.items():
                            out.setdefault((model, label, mode, name), []).append(run(srv.url, texts, n, sampling))
    return out


def markdown(runs: dict, n: int, count: int, peer: str) -> list[str]:
    names = ("llama-server", "shimmy-py serve")
    lines = [f"{len(corpus.HELDOUT)} prompts (the first 48 tokens of each held-out file), {n} tokens each, one "
             f"client; {count} rounds, medians; llama-server of the {peer} build.", "",
             "| model | sampling | llama-server: plain tok/s | ngram tok/s | kept/drafted | speedup "
             "| shimmy-py: plain tok/s | ngram tok/s | kept/drafted | speedup | shimmy / llama (ngram) | same text |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    models = sorted({k[0] for k in runs}, reverse=True)
    for model in models:
        for label in SAMPLINGS:
            cells, tps = [], {}
            for name in names:
                plain, spec = runs[(model, label, "none", name)], runs[(model, label, "ngram-simple", name)]
                tps[name] = statistics.median(x["tps"] for x in spec)
                speedup = statistics.median(s["tps"] / p["tps"] for s, p in zip(spec, plain))
                cells += [f"{statistics.median(x['tps'] for x in plain):.1f}", f"{tps[name]:.1f}",
                          f"{sum(x['accepted'] for x in spec)}/{sum(x['drafted'] for x in spec)}", f"{speedup:.2f}x"]
            same = all(a["texts"] == b["texts"] for a, b in zip(runs[(model, label, "ngram-simple", names[0])],
                                                                 runs[(model, label, "ngram-simple", names[1])]))
            lines.append(f"| {model} | {label} | " + " | ".join(cells) +
                         f" | {tps[names[1]] / tps[names[0]]:.3f} | {'yes' if same else 'no'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False))
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer", default="stock", choices=("stock", "default"),
                    help="the llama-server build (stock: as users build it; native/build.sh --stock)")
    a = ap.parse_args()
    print("\n".join(markdown(rounds(a.threads, a.n, a.rounds, a.peer), a.n, a.rounds, a.peer)))


if __name__ == "__main__":
    main()
