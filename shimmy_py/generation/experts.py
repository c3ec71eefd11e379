"""Expert routing traces: which routed experts each MoE layer chose for each
token, with their gate weights, and the figures a researcher reads off them.

`ExpertRecorder` is the sink of a graph tap (native/tap.py) on the nodes
llama.cpp names `ffn_moe_weights*-<layer>` (the chosen experts' weights, at
each stage: the last one present is what multiplies the experts' outputs:
after gpt-oss's softmax over the chosen, DeepSeek-V3's normalisation and
scale). The chosen ids, `ffn_moe_topk-<layer>`, are read as the operand of
the first stage (the probabilities' rows at those ids): tapped as a node of
their own they would pause the graph once more per MoE layer. Shared experts
are not routed and do not appear. `ExpertTrace` is the result: arrays shaped
(tokens, MoE layers, k), the tokens and their text, and the statistics.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GenerationError

TOPK = "ffn_moe_topk"
WEIGHTS = "ffn_moe_weights"          # get_rows(probabilities, ids): its operand is the TOPK node
WEIGHT_STAGES = (WEIGHTS, "ffn_moe_weights_softmax", "ffn_moe_weights_norm", "ffn_moe_weights_scaled")
ROUTER_LOGITS = "ffn_moe_logits"     # with its operand: the router's input
DEFAULT_CAP = 1 << 16                # tokens kept per trace: a long generation stops recording, never grows


def tap_names(router_inputs: bool = False) -> dict[str, bool | str]:
    """The graph nodes a routing trace reads (and whether each one's operand)."""
    names = {WEIGHTS: TOPK, **{s: False for s in WEIGHT_STAGES[1:]}}
    if router_inputs:
        names[ROUTER_LOGITS] = True
    return names


class ExpertRecorder:
    """One sequence's routing: the tap's nodes go to a StepRouting, which is
    taken one ubatch at a time (a ubatch ends where the next one meets its first
    MoE layer again) and appended to the trace, up to `cap_tokens` tokens."""

    def __init__(self, cap_tokens: int = DEFAULT_CAP, router_inputs: bool = False):
        self.cap, self.router_inputs = cap_tokens, router_inputs
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []     # per ubatch: ids, weights (T, L, k)
        self.inputs: list[np.ndarray] = []                      # per ubatch: router inputs (T, L, n_embd)
        self.logits: list[np.ndarray] = []                      # per ubatch: router logits (T, L, n_expert)
        self.layers: tuple[int, ...] | None = None
        self.n_tokens, self.truncated = 0, False
        self._step = StepRouting()
        self._router: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # layer: (logits, input) of this ubatch
        self._last = (-1, -1)           # (layer, node) of the last layer-opening node seen

    def __call__(self, name: str, data: np.ndarray, operand: np.ndarray | None) -> None:
        base, _, layer_s = name.rpartition("-")
        if base in (ROUTER_LOGITS, WEIGHTS):   # in graph order, the router's logits, then its choice
            at = (int(layer_s), base == WEIGHTS)
            if at <= self._last:
                self.flush()                # a new ubatch: an earlier layer (or the same node) again
            self._last = at
        if base == ROUTER_LOGITS:
            self._router[int(layer_s)] = data.reshape(-1, data.shape[-1]), operand.reshape(-1, operand.shape[-1])
        else:
            self._step(name, data, operand)

    def flush(self) -> None:
        routed, router = self._step.take(), self._router
        self._router, self._last = {}, (-1, -1)
        if not routed:
            return
        layers = tuple(routed)
        if self.layers is None:
            self.layers = layers
        if layers != self.layers or len({len(ids) for ids, _ in routed.values()}) != 1:
            raise GenerationError(f"incomplete routing in a batch: layers {layers} (expected {self.layers}) "
                                  f"routed {[len(ids) for ids, _ in routed.values()]} tokens "
                                  "(a layer routed only some of the batch's tokens)")
        room = self.cap - self.n_tokens
        if room <= 0:
            self.truncated = True
            return
        ids = np.stack([routed[i][0] for i in layers], axis=1)[:room]
        self.truncated |= len(ids) < len(routed[layers[0]][0])
        self.rows.append((ids, np.stack([routed[i][1] for i in layers], axis=1)[:room]))
        if self.router_inputs:
            self.logits.append(np.stack([router[i][0] for i in layers], axis=1)[:room])
            self.inputs.append(np.stack([router[i][1] for i in layers], axis=1)[:room])
        self.n_tokens += len(ids)

    def trace(self, tokens, pieces, n_prompt: int, n_experts: int) -> "ExpertTrace":
        """The trace of a generation whose prompt was `n_prompt` of `tokens`."""
        self.flush()
        if not self.rows:
            raise GenerationError("no routing was recorded: the model has no MoE layer the tap saw")
        ids = np.concatenate([r[0] for r in self.rows])
        weights = np.concatenate([r[1] for r in self.rows])
        n = len(ids)
        return ExpertTrace(ids=ids, weights=weights, layers=self.layers, n_experts=n_experts,
                           tokens=list(tokens)[:n], pieces=list(pieces)[:n], n_prompt=min(n_prompt, n),
                           truncated=self.truncated)


@dataclass
class ExpertTrace:
    """Routing of `tokens` (prompt first, `n_prompt` of them, then generated):
    `ids[t, l, j]` is the j-th expert MoE layer `layers[l]` chose for token t
    (best first), `weights[t, l, j]` its gate weight. `starts` marks where each
    prompt of a merged trace begins."""
    ids: np.ndarray
    weights: np.ndarray
    layers: tuple[int, ...]
    n_experts: int
    tokens: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    n_prompt: int = 0
    truncated: bool = False
    starts: tuple[int, ...] = (0,)

    @property
    def k(self) -> int:
        return self.ids.shape[2]

    @property
    def generated(self) -> np.ndarray:
        """Which tokens were generated (not prompt), as a boolean mask."""
        mask = np.ones(len(self.ids), dtype=bool)
        mask[:self.n_prompt] = False
        return mask

    # --- figures ----------------------------------------------------------------
    def counts(self) -> np.ndarray:
        """(MoE layers, n_experts): how often each expert was chosen."""
        out = np.zeros((len(self.layers), self.n_experts), dtype=np.int64)
        for li in range(len(self.layers)):
            out[li] = np.bincount(self.ids[:, li, :].ravel(), minlength=self.n_experts)[:self.n_experts]
        return out

    def load_balance(self) -> dict[str, np.ndarray]:
        """Per layer: max/mean of the counts (1 is perfectly balanced) and the
        entropy of the choice distribution over its maximum, log(n_experts)."""
        c = self.counts().astype(np.float64)
        p = c / c.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        return {"max_over_mean": c.max(axis=1) / c.mean(axis=1), "entropy": ent / np.log(self.n_experts)}

    def _pairs(self):
        """Adjacent token pairs inside each prompt's segment."""
        ends = [*self.starts[1:], len(self.ids)]
        for s, e in zip(self.starts, ends):
            for t in range(s, e - 1):
                yield t

    def adjacent_overlap(self) -> np.ndarray:
        """Per layer: the mean share of experts a token has in common with the one before."""
        pairs = list(self._pairs())
        out = np.zeros(len(self.layers))
        if not pairs:
            return out
        for li in range(len(self.layers)):
            same = [len(set(self.ids[t, li]) & set(self.ids[t + 1, li])) for t in pairs]
            out[li] = np.mean(same) / self.k
        return out

    def lru_hit_rate(self, capacity: int) -> np.ndarray:
        """Per layer: the share of routings an LRU cache of `capacity` experts
        (per layer, filled as tokens come) would have held already."""
        if capacity < 1:
            raise GenerationError(f"an expert cache holds at least 1 expert, got {capacity}")
        out = np.zeros(len(self.layers))
        for li in range(len(self.layers)):
            cache: OrderedDict[int, None] = OrderedDict()    # least recently used first
            hits = 0
            for chosen in self.ids[:, li].tolist():
                hits += sum(e in cache for e in chosen)
                for e in chosen:
                    cache[e] = None
                    cache.move_to_end(e)
                while len(cache) > capacity:
                    cache.popitem(last=False)
            out[li] = hits / (len(self.ids) * self.k)
        return out

    def lru_curve(self, capacities=None) -> tuple[np.ndarray, np.ndarray]:
        """(capacities, hit rates shaped (capacities, layers))."""
        caps = np.array(capacities if capacities is not None else
                        sorted({max(1, self.n_experts * i // 8) for i in range(1, 9)} | {self.k}))
        return caps, np.stack([self.lru_hit_rate(int(c)) for c in caps])

    def summary(self) -> str:
        """One line per MoE layer: the busiest experts and the figures above."""
        c, bal, ov = self.counts(), self.load_balance(), self.adjacent_overlap()
        half = max(self.k, self.n_experts // 4)
        lru = self.lru_hit_rate(half)
        lines = [f"{len(self.ids)} tokens ({self.n_prompt} prompt), {len(self.layers)} MoE layers, "
                 f"{self.n_experts} experts, top-{self.k}" + (" (truncated)" if self.truncated else ""),
                 f"layer  top experts (count)           max/mean  entropy  overlap  LRU@{half}"]
        for li, layer in enumerate(self.layers):
            top = np.argsort(-c[li], kind="stable")[:3]
            busiest = " ".join(f"{e}({c[li, e]})" for e in top)
            lines.append(f"{layer:5d}  {busiest:30s} {bal['max_over_mean'][li]:8.2f} {bal['entropy'][li]:8.3f}"
                         f" {ov[li]:8.3f} {lru[li]:7.3f}")
        return "\n".join(lines)

    # --- files --------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """The arrays, tokens and layout as a NumPy .npz."""
        np.savez_compressed(path, ids=self.ids, weights=self.weights, layers=np.array(self.layers),
                            n_experts=self.n_experts, tokens=np.array(self.tokens, dtype=np.int64),
                            pieces=np.array(self.pieces, dtype=object).astype(str), n_prompt=self.n_prompt,
                            truncated=self.truncated, starts=np.array(self.starts), counts=self.counts())

    @classmethod
    def load(cls, path: str | Path) -> "ExpertTrace":
        with np.load(path) as z:
            return cls(ids=z["ids"], weights=z["weights"], layers=tuple(int(x) for x in z["layers"]),
                       n_experts=int(z["n_experts"]), tokens=[int(t) for t in z["tokens"]],
                       pieces=[str(p) for p in z["pieces"]], n_prompt=int(z["n_prompt"]),
                       truncated=bool(z["truncated"]), starts=tuple(int(s) for s in z["starts"]))

    @classmethod
    def merge(cls, traces: list["ExpertTrace"]) -> "ExpertTrace":
        """Several prompts' traces as one profile (each keeps its segment)."""
        if not traces:
            raise GenerationError("nothing to merge: no traces")
        first = traces[0]
        if any(t.layers != first.layers or t.n_experts != first.n_experts for t in traces):
            raise GenerationError("traces of different models cannot be merged")
        starts = np.cumsum([0] + [len(t.ids) for t in traces[:-1]])
        return cls(ids=np.concatenate([t.ids for t in traces]), weights=np.concatenate([t.weights for t in traces]),
                   layers=first.layers, n_experts=first.n_experts, tokens=[x for t in traces for x in t.tokens],
                   pieces=[x for t in traces for x in t.pieces], n_prompt=0,
                   truncated=any(t.truncated for t in traces), starts=tuple(int(s) for s in starts))

    def heatmap(self, path: str | Path, cell: int = 8) -> tuple[int, int]:
        """A PNG of layer x expert counts; returns its (width, height)."""
        from .pictures import heatmap_png
        return heatmap_png(self.counts(), path, cell)

    def strip(self, path: str | Path, cell: int = 6) -> tuple[int, int]:
        """A PNG of token x layer: the colour of the expert that won (top-1)."""
        from .pictures import strip_png
        return strip_png(self.ids[:, :, 0], self.n_experts, path, cell)


class StepRouting:
    """The sink of a batched engine's tap: per MoE layer, the ids and weights
    of the rows one llama_decode routed, in batch order (with one KV stream
    llama.cpp splits a batch into ubatches in order)."""

    def __init__(self):
        self._layers: dict[int, dict] = {}

    def __call__(self, name: str, data: np.ndarray, operand: np.ndarray | None) -> None:
        base, _, layer_s = name.rpartition("-")
        slot = self._layers.setdefault(int(layer_s), {"ids": [], "weights": {}})
        if base == WEIGHTS:
            slot["ids"].append(operand.reshape(-1, operand.shape[-1]).astype(np.int32, copy=False))
        if base in WEIGHT_STAGES:
            slot["weights"].setdefault(WEIGHT_STAGES.index(base), []).append(
                data.astype(np.float32, copy=False).ravel())

    def take(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{layer: (ids, weights) shaped (rows routed, k)} of the last decode; then empty."""
        out = {}
        for layer, slot in sorted(self._layers.items()):
            if slot["ids"] and slot["weights"]:
                ids = np.concatenate(slot["ids"])
                out[layer] = ids, np.concatenate(slot["weights"][max(slot["weights"])]).reshape(-1, ids.shape[1])
        self._layers = {}
        return out


def batch_rows(routed: dict[int, tuple[np.ndarray, np.ndarray]], want: list[bool]) -> dict[int, np.ndarray]:
    """Which rows of the batch each layer's routed rows are: every row, or (in
    the last layer, which llama.cpp computes only for tokens whose logits are
    wanted) the rows with `want` set."""
    outputs = np.flatnonzero(want)
    rows = {}
    for layer, (ids, _) in routed.items():
        if len(ids) == len(want):
            rows[layer] = np.arange(len(want))
        elif len(ids) == len(outputs):
            rows[layer] = outputs
        else:
            raise GenerationError(f"layer {layer} routed {len(ids)} rows of a batch of {len(want)} "
                                  f"({len(outputs)} with logits)")
    return rows
