"""Pre-gating, measured: the next MoE layer's router applied to this layer's
router input names the experts the next layer will likely choose, so their
reads can start a layer ahead. The product does not do it (docs/STREAMING.md
says why); this script measures it, as root, in a memory cgroup, against the
streamer as it is, in interleaved rounds.

    python benchmarks/pregating.py [--limit 0.74GiB] [--rounds 3] [--tokens 32] [--model PATH]

`PregatingStreamer` is the product's ExpertStreamer plus one more tap node,
`ffn_moe_logits-<layer>` with its operand (the router's input): at each, it
multiplies the input by the next layer's router (F32, read from the file),
takes the top k, and has those experts read. At the next layer's routing it
counts how many of the chosen experts were predicted (the hit rate).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shimmy_py.generation.experts import ROUTER_LOGITS, TOPK, WEIGHTS  # noqa: E402
from shimmy_py.generation.streaming import ExpertStreamer  # noqa: E402


class PregatingStreamer(ExpertStreamer):
    def __init__(self, path, tiers, header, k: int):
        super().__init__(path, tiers)
        self.k, self.hits, self.chosen = k, 0, 0
        self.routers = {}
        for t in header.tensors:
            parts = t.name.split(".")
            if len(parts) == 4 and parts[2] == "ffn_gate_inp" and int(parts[1]) in self.slices:
                self.routers[int(parts[1])] = np.fromfile(header.path, np.float32, t.n_elements,
                                                          offset=t.offset).reshape(t.shape[::-1])
        self.predicted: dict[int, set[int]] = {}

    def __call__(self, name, data, operand):
        base, _, layer = name.rpartition("-")
        layer = int(layer)
        if base == ROUTER_LOGITS:
            w = self.routers.get(layer + 1)
            if w is not None and operand is not None:
                logits = operand.reshape(-1, operand.shape[-1]) @ w.T
                top = np.argpartition(-logits, self.k - 1, axis=1)[:, :self.k]
                ahead = set(int(e) for e in np.unique(top)) - self.resident[layer + 1]
                self.predicted[layer + 1] = ahead
                for e in sorted(ahead):
                    for offset, size in self.slices[layer + 1]:
                        self._fetch(offset + e * size, size)
            return
        if layer in self.predicted and operand is not None:
            chosen = set(int(e) for e in np.unique(operand))
            self.hits += len(chosen & self.predicted.pop(layer))
            self.chosen += len(chosen)
        super().__call__(name, data, operand)


def run(model: str, pregate: bool, tokens: int) -> dict:
    """One run in this process (in the cgroup): decode speed, reads, hit rate."""
    from shimmy_py import Model
    from shimmy_py.gguf_io.reader import read_header
    with Model(model, n_ctx=64, n_threads=2) as m:
        streamer = m.streamer
        if pregate:                                       # the product's streamer replaced by this one
            tap = m.context.native.tap
            tap.kept = [(s, n) for s, n in tap.kept if s is not streamer]
            k = m.header.arch_key("expert_used_count")
            streamer = PregatingStreamer(model, m.plan.tiers, read_header(model), k)
            streamer.attach()
            tap.keep(streamer, {WEIGHTS: TOPK, ROUTER_LOGITS: True})
        m.generate("def read_lines(path):", max_tokens=4, temperature=0)
        t = time.perf_counter()
        r = m.generate("def read_lines(path):", max_tokens=4 + tokens, temperature=0)
        dt = time.perf_counter() - t
        out = {"tps": tokens / dt, "stats": streamer.stats.as_dict(), "tokens": r.tokens,
               "hit": streamer.hits / streamer.chosen if pregate and streamer.chosen else None}
        if pregate:
            streamer.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", default="0.74GiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default=None)
    ap.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)   # a run inside the cgroup
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(args.model, args.one == "on", args.tokens)))
        return 0
    from shimmy_py.procs import MemoryLimit
    from shimmy_py.sizes import parse_size
    from shimmy_py.synthetic.synth import write
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(Path(tmp.name) / "bench.gguf")
    if not args.model:
        write(model, preset="bench")
    rows: dict[str, list[dict]] = {"streamed": [], "streamed + pre-gating": []}
    with MemoryLimit(parse_size(args.limit)) as cg:
        for _ in range(args.rounds):
            for name, flag in (("streamed", "off"), ("streamed + pre-gating", "on")):
                done, _ = cg.run([sys.executable, __file__, "--one", flag, "--model", model, "--tokens",
                                  str(args.tokens)], cwd=ROOT)
                if done.returncode:
                    raise RuntimeError(done.stderr[-800:])
                rows[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    same = all(a["tokens"] == b["tokens"] for a, b in zip(*rows.values()))
    print(f"{Path(model).name} under a {args.limit} cgroup, {args.tokens} tokens, {args.rounds} rounds "
          f"(same tokens in every run: {same})")
    for name, runs in rows.items():
        tps = [r["tps"] for r in runs]
        read = statistics.median(r["stats"]["file_bytes_per_token"] for r in runs) / 2**20
        hit = [r["hit"] for r in runs if r["hit"] is not None]
        print(f"{name:<24} {statistics.median(tps):6.2f} tok/s ({min(tps):.2f}-{max(tps):.2f}), "
              f"{read:.1f} MiB read a token" + (f", predicted {statistics.median(hit):.0%} of the next "
                                               "layer's experts" if hit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
