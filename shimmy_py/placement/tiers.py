"""The third tier: when the host part of a plan is more than the RAM that
may hold it, which host tensors stay resident (pinned in RAM) and which
routed experts stream from the file, with the reads a token is expected to
cost. A pure function of the plan's host tensors, its host KV cache and
reserve, a budget and an optional routing profile.

Resident, in this order: every host tensor a token reads whole (attention,
norms, routers, shared experts, dense FFNs, the output head), then, with a
profile (`shimmy-py trace` counts), the most routed experts while they fit.
The token embedding is read a row per token: it is left to the page cache,
as are the streamed experts. What the budget leaves after the resident set
is the page cache the streamed experts share; the expected misses assume it
keeps the most routed of them (uniform routing without a profile).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlacementError
from ..sizes import gib

EMBEDDING = "token_embd"


@dataclass(frozen=True)
class ExpertProfile:
    """How often each routed expert was chosen: counts[i][e] for MoE layer layers[i]."""
    layers: tuple[int, ...]
    counts: tuple[tuple[int, ...], ...]

    @classmethod
    def load(cls, path) -> ExpertProfile:
        """A `shimmy-py trace --out` file (.npz)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                layers, counts = z["layers"], z["counts"]
        except (OSError, ValueError, KeyError) as e:
            raise PlacementError(f"--expert-profile {path}: not a `shimmy-py trace --out` file ({e})") from None
        if counts.ndim != 2 or len(layers) != counts.shape[0] or counts.sum() <= 0:
            raise PlacementError(f"--expert-profile {path}: its counts are not (MoE layers, experts) with routings")
        return cls(tuple(int(x) for x in layers), tuple(tuple(int(c) for c in row) for row in counts))

    def shares(self, layer: int, n_expert: int) -> np.ndarray | None:
        """Each expert's expected share of the layer's routings (summing to
        1), or None without this layer: its count plus one over the total
        plus one an expert (add-one, Laplace's rule). An expert a short
        trace never saw is not one no token will choose: taken as never
        chosen, a profile of 43 tokens had the flagship's plan expect no
        reads from the file, where it read 257 MiB a token. With many
        routings an expert, the counts decide."""
        if layer not in self.layers:
            return None
        row = np.asarray(self.counts[self.layers.index(layer)], dtype=np.float64)
        if len(row) != n_expert:
            raise PlacementError(f"the expert profile has {len(row)} experts in layer {layer}, the model "
                                 f"{n_expert}: it was traced on another model")
        return (row + 1) / (row.sum() + n_expert)


@dataclass(frozen=True)
class LayerTier:
    layer: int
    slice_bytes: int               # one expert's gate + up + down in this layer (host part)
    reads: int                     # its slices: one read each (gate, up, down: 3; fused gate_up: 2)
    resident_experts: tuple[int, ...]
    cached_experts: int            # streamed experts the page cache is expected to keep
    miss_rate: float               # expected share of this layer's routed slices read from the file


@dataclass(frozen=True)
class Tiers:
    budget_bytes: int              # host RAM for weights, KV cache and reserve
    resident_bytes: int            # pinned: read every token, and the resident experts
    streamed_bytes: int            # routed experts read from the file when routed (and the embedding)
    cache_bytes: int               # the page cache left to what streams
    kv_reserve_bytes: int
    file_bytes_per_token: float    # expected reads from the file per decoded token
    miss_rate: float               # expected share of routed expert slices read from the file
    layers: tuple[LayerTier, ...]
    resident: frozenset[str]       # host tensors pinned whole
    profiled: bool

    def tier_of(self, name: str) -> str:
        return "resident" if name in self.resident else "stream"

    def resident_experts(self, layer: int) -> tuple[int, ...]:
        return next((t.resident_experts for t in self.layers if t.layer == layer), ())

    def lines(self) -> list[str]:
        basis = "by the routing profile" if self.profiled else "routing taken as uniform"
        out = [f"host RAM is short: budget {gib(self.budget_bytes)} for the host part; resident (pinned) "
               f"{gib(self.resident_bytes)}, streamed from the file {gib(self.streamed_bytes)}, page cache for "
               f"them {gib(self.cache_bytes)}",
               f"expected from the file per token: {self.file_bytes_per_token / 2**20:.1f} MiB (routed expert "
               f"slices missed: {self.miss_rate:.0%}, {basis})"]
        for t in self.layers:
            out.append(f"  layer {t.layer:3d}: {len(t.resident_experts)} experts resident, about {t.cached_experts} "
                       f"cached, miss rate {t.miss_rate:.0%}, {t.slice_bytes / 2**20:.2f} MiB an expert")
        return out


def host_tiers(tensors, hparams, budget: int, kv_reserve: int, profile: ExpertProfile | None) -> Tiers | None:
    """The tiers of the host tensors (Placement-like: name, role, layer, bytes),
    or None when they fit the budget with the KV cache and reserve."""
    host = list(tensors)
    total = sum(t.bytes for t in host)
    if total + kv_reserve <= budget:
        return None
    experts = [t for t in host if t.role == "routed_experts"]
    whole = [t for t in host if t.role not in ("routed_experts", EMBEDDING)]
    always = sum(t.bytes for t in whole)
    if always + kv_reserve > budget:
        raise PlacementError(
            f"host RAM cannot hold even what every token reads: {gib(always)} of tensors read whole (attention, "
            f"norms, routers, shared experts, dense layers, output) and {gib(kv_reserve)} of KV cache and "
            f"reserve, against a budget of {gib(budget)}; give more --ram-budget, a smaller --ctx, or put more "
            "on an accelerator")
    n_exp, k = hparams.n_expert, max(hparams.n_expert_used, 1)
    by_layer: dict[int, int] = {}
    reads: dict[int, int] = {}
    for t in experts:
        by_layer[t.layer] = by_layer.get(t.layer, 0) + t.bytes // n_exp
        reads[t.layer] = reads.get(t.layer, 0) + 1
    traced = {layer: s for layer in by_layer if profile and (s := profile.shares(layer, n_exp)) is not None}
    shares = {layer: traced.get(layer, np.full(n_exp, 1.0 / n_exp)) for layer in by_layer}   # untraced: uniform
    room = budget - always - kv_reserve
    resident = _resident_experts(by_layer, traced, room)
    kept = sum(by_layer[layer] * len(ids) for layer, ids in resident.items())
    cache = room - kept
    layers, file_bytes = _misses(by_layer, reads, shares, resident, cache, k)
    embd = sum(t.bytes for t in host if t.role == EMBEDDING)
    routed = sum(by_layer.values()) * k
    return Tiers(budget, always + kept, sum(t.bytes for t in experts) - kept + embd, cache, kv_reserve,
                 file_bytes, file_bytes / routed if routed else 0.0, layers,
                 frozenset(t.name for t in whole), profile is not None)


def _resident_experts(by_layer: dict, shares: dict, room: int) -> dict[int, tuple[int, ...]]:
    """The most routed experts of the traced layers (`shares`), across layers, by routings per byte, while
    they fit `room`."""
    ranked = sorted((-s[e] / by_layer[layer], layer, e) for layer, s in shares.items() for e in range(len(s)))
    kept: dict[int, list[int]] = {layer: [] for layer in by_layer}
    for _, layer, e in ranked:
        if by_layer[layer] <= room:
            kept[layer].append(e)
            room -= by_layer[layer]
    return {layer: tuple(sorted(ids)) for layer, ids in kept.items()}


def _misses(by_layer, reads, shares, resident, cache: int, k: int):
    """Per layer: the streamed experts the cache keeps (the most routed ones,
    across layers, while they fit) and the share of routings that miss; and
    the bytes a token is expected to read from the file."""
    streamed = sorted((-s[e] / by_layer[layer], e, layer, s[e]) for layer, s in shares.items()
                      for e in range(len(s)) if e not in resident[layer])
    cached: dict[int, int] = {layer: 0 for layer in by_layer}
    hit_share: dict[int, float] = {layer: 0.0 for layer in by_layer}
    for _, e, layer, share in streamed:
        if by_layer[layer] <= cache:
            cache -= by_layer[layer]
            cached[layer] += 1
            hit_share[layer] += share
    layers, file_bytes = [], 0.0
    for layer, size in sorted(by_layer.items()):
        s = shares[layer]
        miss = max(0.0, 1.0 - float(sum(s[e] for e in resident[layer])) - hit_share[layer])
        layers.append(LayerTier(layer, size, reads[layer], resident[layer], cached[layer], miss))
        file_bytes += miss * size * k
    return tuple(layers), file_bytes
