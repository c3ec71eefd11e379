"""Other ways to stream experts, measured against the streamer as it is
("streamed": the product's default method), as root, in a memory cgroup,
in interleaved rounds, each decode step fed a random token as llama-bench
feeds them. The product does none of them but `pread` and the last,
--stream-method pread and own (docs/STREAMING.md says why); pre-gating
changes the default method (fadvise), the others `pread`'s 8 readers, one
way each:

- pread: the product's --stream-method pread;
- pre-gating: `PregatingStreamer` is the product's ExpertStreamer plus one
  more tap node, `ffn_moe_logits-<layer>` with its operand (the router's
  input): at each, it multiplies the input by the next layer's router (F32,
  read from the file), takes the top k, and has those experts read a layer
  ahead. At the next layer's routing it counts how many of the chosen
  experts were predicted (the hit rate);
- by need: a layer's reads asked for in the order the graph uses them
  (every chosen expert's up slice, then gate, then down) instead of expert by expert;
- 16 readers instead of 8: more reads in flight at once;
- waiting: the graph goes on only when the layer's reads are done (no page
  fault meets a page not yet asked for);
- own cache: the product's --stream-method own (OwnedExpertStreamer): the
  streamed tensors' pages become the streamer's own memory, read with
  O_DIRECT and given back by it, outside the page cache.

    python benchmarks/stream_variants.py [--limit 0.74GiB] [--rounds 3] [--tokens 32] [--model PATH]
                                         [--variants streamed,waiting]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shimmy_py.bench import fed_random  # noqa: E402
from shimmy_py.generation.experts import ROUTER_LOGITS, TOPK, WEIGHTS  # noqa: E402
from shimmy_py.generation.streaming import ExpertStreamer, OwnedExpertStreamer  # noqa: E402
from shimmy_py.native import pagecache  # noqa: E402


class PregatingStreamer(ExpertStreamer):
    def __init__(self, path, tiers, header, k: int, method: str = "fadvise"):
        super().__init__(path, tiers, method)
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


class ByNeedStreamer(ExpertStreamer):
    """A layer's reads in the order the graph uses them: up, gate, down, each for every chosen expert."""

    def __init__(self, path, tiers, header):
        super().__init__(path, tiers, "pread")
        role = {t.offset: t.name for t in header.tensors}
        rank = {"up": 0, "gate": 1, "down": 2}
        for tensors in self.slices.values():
            tensors.sort(key=lambda t: rank.get(role[t[0]].split(".")[2].split("_")[1], 3))

    def __call__(self, name, data, operand):
        tensors, chosen = self.routed(name, operand)
        for offset, size in tensors:
            for e in chosen:
                self._fetch(offset + e * size, size)


class WaitingStreamer(ExpertStreamer):
    """The graph goes on when the layer's reads are done."""

    def __call__(self, name, data, operand):
        tensors, chosen = self.routed(name, operand)
        reads = []
        for e in chosen:
            for offset, size in tensors:
                self.stats.routed += 1
                if pagecache.resident_share(self.base + offset + e * size, size) >= 1.0:
                    continue
                self.stats.missed += 1
                self.stats.bytes_read += size
                reads.append(self._pool.submit(self._pread, offset + e * size, size))
        for r in reads:
            r.result()


VARIANTS = ("streamed", "pread", "pre-gating", "by need", "16 readers", "waiting", "own cache")


def variant(name: str, m, model: str):
    """The streamer of variant `name` for the loaded model `m` (None: the product's, kept)."""
    from shimmy_py.gguf_io.reader import read_header
    header = read_header(model)
    if name == "pre-gating":
        return PregatingStreamer(model, m.plan.tiers, header, m.header.arch_key("expert_used_count")), \
            {WEIGHTS: TOPK, ROUTER_LOGITS: True}
    made = {"by need": lambda: ByNeedStreamer(model, m.plan.tiers, header),
            "pread": lambda: ExpertStreamer(model, m.plan.tiers, "pread"),
            "16 readers": lambda: ExpertStreamer(model, m.plan.tiers, "pread", readers=16),
            "waiting": lambda: WaitingStreamer(model, m.plan.tiers, "pread"),
            "own cache": lambda: OwnedExpertStreamer(model, m.plan.tiers)}.get(name)
    return (made(), {WEIGHTS: TOPK}) if made else None


def run(model: str, name: str, tokens: int) -> dict:
    """One run in this process (in the cgroup): decode speed, reads, hit rate."""
    from shimmy_py import Model
    with Model(model, n_ctx=64, n_threads=2) as m:
        streamer = m.streamer
        other = variant(name, m, model)
        if other:                                         # the product's streamer replaced by this one
            tap = m.context.native.tap
            tap.kept = [(s, n) for s, n in tap.kept if s is not streamer]
            streamer, nodes = other
            streamer.attach()
            tap.keep(streamer, nodes)
        m.generate("def read_lines(path):", max_tokens=4, temperature=0)
        m.reset()
        before = []
        c = fed_random(m, m.tokenize("def read_lines(path):"), tokens + 1, 1,    # as llama-bench feeds
                       lambda _: before.append(streamer.stats.bytes_read))
        hits = getattr(streamer, "hits", 0), getattr(streamer, "chosen", 0)
        out = {"tps": c.tokens_per_s, "read": (streamer.stats.bytes_read - before[0]) / tokens, "tokens": c.tokens,
               "hit": hits[0] / hits[1] if hits[1] else None}
        if other:
            streamer.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", default="0.74GiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)   # a run inside the cgroup
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(args.model, args.one, args.tokens)))
        return 0
    from shimmy_py.procs import MemoryLimit
    from shimmy_py.sizes import parse_size
    from shimmy_py.synthetic.synth import write
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(Path(tmp.name) / "bench.gguf")
    if not args.model:
        write(model, preset="bench")
    chosen = [v.strip() for v in args.variants.split(",")]
    if not set(chosen) <= set(VARIANTS) or not chosen:
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    rows: dict[str, list[dict]] = {name: [] for name in chosen}
    with MemoryLimit(parse_size(args.limit)) as cg:
        for _ in range(args.rounds):
            for name in chosen:
                done, _ = cg.run([sys.executable, __file__, "--one", name, "--model", model, "--tokens",
                                  str(args.tokens)], cwd=ROOT)
                if done.returncode:
                    raise RuntimeError(done.stderr[-800:])
                rows[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    same = all(len({tuple(r["tokens"]) for r in runs}) == 1 for runs in zip(*rows.values()))
    print(f"{Path(model).name} under a {args.limit} cgroup, {args.tokens} random tokens fed, {args.rounds} rounds "
          f"(the same greedy choice after each in every run: {same})")
    for name, runs in rows.items():
        tps = [r["tps"] for r in runs]
        read = statistics.median(r["read"] for r in runs) / 2**20
        hit = [r["hit"] for r in runs if r["hit"] is not None]
        print(f"{name:<24} {statistics.median(tps):6.2f} tok/s ({min(tps):.2f}-{max(tps):.2f}), "
              f"{read:.1f} MiB read a token" + (f", predicted {statistics.median(hit):.0%} of the next "
                                               "layer's experts" if hit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
