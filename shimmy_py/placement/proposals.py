"""What would run faster in the same memory when a plan streams experts from
the file: the same plan of a file whose routed experts are at a smaller type
(retype.py), whole or for the fewest layers that make the host part fit,
each predicted by the same cost model (predict.py) where the machine was
calibrated. A proposal is only ever printed, with the command that makes
its file: quantization is lossy, and `shimmy-py quantize` reports by how
much (greedy agreement and perplexity against the original).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PlacementError
from ..sizes import gib, readable
from .plan import CPU
from .predict import predict
from .retype import PROPOSED, Retyping, moe_layers, requantized, retyped, target_types


@dataclass(frozen=True)
class Proposal:
    retyping: Retyping
    file_bytes: int
    plan: object                  # the retyped file's Plan (tiers None: no streaming)
    prediction: object = None     # its Prediction, on a calibrated machine

    def line(self) -> str:
        where = "fits in RAM, nothing streams" if self.plan.tiers is None else \
            f"still streams {gib(self.plan.tiers.streamed_bytes)}"
        speed = f", {self.prediction.decode_tps:.2f} tok/s predicted" if self.prediction else ""
        return f"{self.retyping.label()}: file {readable(self.file_bytes)}, {where}{speed}"

    def command(self, model: str) -> str:
        return f"shimmy-py quantize {model} OUT.gguf {' '.join(self.retyping.args())}"


def propose(table, plan_of_table, base, profile: dict | None = None, threads: int | None = None,
            current=None) -> list[Proposal]:
    """Proposals for `base`, the plan of `table`, when it streams: each type of
    PROPOSED that makes the experts smaller, and, for the most precise that
    fits whole, the fewest MoE layers at it that fit. `plan_of_table`: the
    same planning for another table (the seam: the machine's, or a test's).
    Only those predicted faster than `current` (the streaming plan's
    Prediction) when there is a profile; every one that fits when there is none."""
    if base.tiers is None:
        return []
    on_acc = frozenset(p.name for p in base.tensors if p.device != CPU)

    def plan_of(retyping: Retyping) -> Proposal | None:
        types = target_types(table, retyping, on_acc)
        if requantized(table, types):
            return None
        rt = retyped(table, types)
        if rt.nbytes >= table.nbytes:
            return None
        try:
            p = plan_of_table(rt)
        except PlacementError:
            return None
        return Proposal(retyping, rt.nbytes, p, predict(p, rt, profile, threads) if profile else None)

    found = [p for p in (plan_of(Retyping(t)) for t in PROPOSED) if p is not None]
    fitting = next((p for p in found if p.plan.tiers is None), None)
    if fitting is not None:
        partial = _fewest_layers(fitting.retyping.type, moe_layers(table), plan_of)
        if partial is not None:
            found.insert(found.index(fitting), partial)
    if current is not None and profile:
        return [p for p in found if p.prediction.decode_tps > current.decode_tps]
    return [p for p in found if p.plan.tiers is None]


def _fewest_layers(type_: str, layers: list[int], plan_of) -> Proposal | None:
    """The fewest leading MoE layers whose experts at `type_` make the host
    part fit (binary search: more layers at a smaller type never need more RAM)."""
    lo, hi, best = 1, len(layers) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        p = plan_of(Retyping(type_, layers=frozenset(layers[:mid])))
        if p is not None and p.plan.tiers is None:
            best, hi = p, mid - 1
        else:
            lo = mid + 1
    return best


def lines(proposals: list[Proposal], model: str, current=None, typed: bool = True) -> list[str]:
    """The proposals as `plan` prints them, each with the command that makes
    its file; `current`: the streaming plan's Prediction (None: not
    calibrated); `typed`: the profile has quantized types' decode rates."""
    if not proposals:
        return []
    out = ["smaller files that would run in this memory (quantizing is lossy: other weights, other answers; "
           "`shimmy-py quantize` reports greedy agreement and perplexity against this file):"]
    if current is not None:
        out.append(f"  this file, streaming: {current.decode_tps:.2f} tok/s predicted")
    for p in proposals:
        out.append(f"  {p.line()}")
        out.append(f"      {p.command(model)}")
    if current is None:
        out.append("  (speeds: run `shimmy-py calibrate` once)")
    elif not typed:
        out.append("  (this machine profile predates quantized types' decode rates: they are read at the F16 "
                   "rate; run `shimmy-py calibrate` again)")
    return out


def to_json(proposals: list[Proposal]) -> list[dict]:
    return [{"type": p.retyping.type, "experts_only": p.retyping.experts_only,
             "layers": sorted(p.retyping.layers) if p.retyping.layers is not None else None,
             "file_bytes": p.file_bytes, "streams": p.plan.tiers is not None,
             "predicted_decode_tps": round(p.prediction.decode_tps, 3) if p.prediction else None,
             "quantize_args": p.retyping.args()} for p in proposals]
