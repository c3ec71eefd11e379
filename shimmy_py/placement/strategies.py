"""The placement strategies, one class each in one registry (KINDS): how a
strategy is written ("n-cpu-moe=8", "fit=8GiB"), what it checks of a model,
whether it plans against an accelerator budget, and which routed experts it
sends to host RAM. The planner, the options' parser and their messages read
the registry: a new strategy is a class here."""
from __future__ import annotations

from collections import defaultdict

from ..errors import PlacementError
from ..gguf_io.tensors import Tensor
from ..sizes import parse_size


class Kind:
    name = ""
    usage = ""              # as written in --strategy, bench's --placements and messages
    budgeted = False        # plans each accelerator against a budget (the planner computes it): a plan that
    #                         does not fit is an error, --vram-budget applies, the reserve may be measured

    def parse(self, arg: str) -> dict | None:
        """Strategy's fields from the text after '=' ("" when none), or None if not this form."""
        return {} if not arg else None

    def check(self, n_cpu_moe: int, n_layer: int, path: str) -> None:
        """Raises PlacementError where the strategy cannot apply to this model."""

    def text(self, n_cpu_moe: int, vram_budget: int | None) -> str:
        return self.name

    def to_cpu(self, movable: list[Tensor], n_cpu_moe: int, budgets: dict[str, int],
               device_of: dict[str, str]) -> set[str]:
        """Names of the routed-expert tensors (on an accelerator, not pinned by -ot) sent to host RAM."""
        return set()


class Gpu(Kind):
    """Every routed expert stays where its layer is."""
    name = usage = "gpu"


class CpuMoe(Kind):
    """Every routed expert to host RAM (llama.cpp's --cpu-moe)."""
    name = usage = "cpu-moe"

    def to_cpu(self, movable, n_cpu_moe, budgets, device_of):
        return {t.name for t in movable}


class NCpuMoe(Kind):
    """The routed experts of layers 0..N-1 to host RAM (llama.cpp's --n-cpu-moe N)."""
    name, usage = "n-cpu-moe", "n-cpu-moe=N"

    def parse(self, arg):
        return {"n_cpu_moe": int(arg)} if arg.isascii() and arg.isdigit() else None

    def check(self, n_cpu_moe, n_layer, path):
        if not 0 <= n_cpu_moe <= n_layer:
            raise PlacementError(f"--n-cpu-moe {n_cpu_moe} is out of range: {path} has "
                                 f"{n_layer} layers (0 to {n_layer})")

    def text(self, n_cpu_moe, vram_budget):
        return f"n-cpu-moe={n_cpu_moe}"

    def to_cpu(self, movable, n_cpu_moe, budgets, device_of):
        return {t.name for t in movable if t.layer is not None and t.layer < n_cpu_moe}


class Fit(Kind):
    """On each accelerator, the routed experts of its last layers stay while
    weights, KV cache and compute reserve fit its budget; past the last whole
    layer that fits, single expert tensors fill what is left."""
    name, usage, budgeted = "fit", "fit or fit=SIZE", True

    def parse(self, arg):
        return {"vram_budget": parse_size(arg) if arg else None}

    def text(self, n_cpu_moe, vram_budget):
        return f"fit={vram_budget}" if vram_budget is not None else "fit"

    def to_cpu(self, movable, n_cpu_moe, budgets, device_of):
        on_cpu = set()
        for dev, left in budgets.items():     # each accelerator keeps the experts of its own last layers
            on_cpu |= fit_layers([t for t in movable if device_of[t.name] == dev], left)
        return on_cpu


def fit_layers(movable: list[Tensor], budget_left: int) -> set[str]:
    """What leaves one accelerator: its last layers' experts stay while they fit, then single tensors."""
    by_layer: dict[int, list[Tensor]] = defaultdict(list)
    for t in movable:
        by_layer[t.layer if t.layer is not None else -1].append(t)
    on_cpu = {t.name for t in movable}
    left = budget_left
    pending: list[Tensor] = []
    for layer in sorted(by_layer, reverse=True):   # the last layers keep their experts
        group = by_layer[layer]
        size = sum(t.nbytes for t in group)
        if not pending and size <= left:
            on_cpu -= {t.name for t in group}
            left -= size
        else:
            pending.extend(group)
    for t in sorted(pending, key=lambda t: (-(t.layer or 0), t.name)):  # finer than layers
        if t.nbytes <= left:
            on_cpu.discard(t.name)
            left -= t.nbytes
    return on_cpu


KINDS: dict[str, Kind] = {k.name: k for k in (Gpu(), CpuMoe(), NCpuMoe(), Fit())}
USAGE = ", ".join(k.usage for k in KINDS.values())     # "gpu, cpu-moe, n-cpu-moe=N, fit or fit=SIZE"


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise PlacementError(f"unknown strategy {name!r}; use {USAGE}")
    return KINDS[name]


def budgeted(name: str) -> bool:
    """Whether the strategy named `name` plans against accelerator budgets ("plan", an explicit Plan: no)."""
    return name in KINDS and KINDS[name].budgeted
