"""Memory admission as a pure function, testable in milliseconds without a
worker: given what the resident models hold (per device, busy or idle, when
last used, which ggml-rpc-servers, their conversation caches), the models
being loaded, the budget per device, --max-models and the policy, and a
newcomer (its plan's bytes per device, its RPC servers, the cache it would
like), `admit` decides which idle models to unload and why, whose
conversation caches to cut, whether the newcomer is re-planned with fit
(through the `replan` seam) and what it will hold; or it refuses with
`Unavailable` saying why (with Retry-After where waiting can help).

The policy, as pool.py's docstring tells it:
  unload   (default, as Ollama) idle models are unloaded, least recently used
           first; only when that cannot make room is the newcomer re-planned
           more offloaded (`fit` within what is left on each device);
  offload  the newcomer is re-planned into what is left first, so that the
           resident models stay; idle ones are unloaded only if even that fails.
Host RAM is shared with the conversation caches: theirs shrink (largest
first) before any model is unloaded for host RAM, and a newcomer's cache
gets what is left of the host budget, up to what it asked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ...errors import Unavailable
from ...placement.plan import CPU as HOST_RAM  # host RAM's device name in plans and budgets
from ...sizes import gib, mib

POLICIES = ("unload", "offload")
RETRY_S = 5                  # what a refused request is told to wait where a busy model may free room


@dataclass(frozen=True)
class Holder:
    """A resident model as admission weighs it."""
    name: str
    need: Mapping[str, int]          # bytes per device its plan holds (weights, KV cache, reserve)
    active: int = 0                  # requests it is serving
    last_used: float = 0.0
    rpc: frozenset = frozenset()     # the ggml-rpc-servers it holds: each serves one client at a time
    cache: int = 0                   # host RAM its conversation cache may hold


@dataclass(frozen=True)
class Loading:
    """A model being loaded: what it will hold is reserved already."""
    name: str
    need: Mapping[str, int]          # with its conversation cache on the host
    rpc: frozenset = frozenset()


@dataclass(frozen=True)
class Newcomer:
    name: str
    need: Mapping[str, int]
    rpc: frozenset = frozenset()
    cache_wanted: int = 0            # --cache-ram


@dataclass(frozen=True)
class Limits:
    budget: Mapping[str, int] = field(default_factory=dict)   # bytes per device models may hold; {}: no check
    max_models: int = 3
    policy: str = "unload"


@dataclass(frozen=True)
class Decision:
    need: dict                       # what the newcomer will hold per device
    plan: object = None              # its re-plan with fit; None: its own plan
    unload: tuple = ()               # (name, reason) of the idle models to unload, in order
    cache_cuts: tuple = ()           # (name, new conversation-cache bytes)
    cache: int = 0                   # the newcomer's conversation cache
    log: tuple = ()                  # what was decided, for the log


Replan = Callable[[str, dict], "tuple[dict, object] | None"]   # (name, room per device) -> (need, plan)


class _Books:
    """The residents left and the caches as the decision goes: what each device holds."""

    def __init__(self, residents, loading, limits: Limits):
        self.residents = {r.name: r for r in residents}
        self.caches = {r.name: r.cache for r in residents}
        self.loading, self.limits = list(loading), limits
        self.log: list[str] = []

    @property
    def budget(self) -> Mapping[str, int]:
        return self.limits.budget

    def planned(self, device: str, keep=None) -> int:
        residents = self.residents.values() if keep is None else keep
        return sum(r.need.get(device, 0) for r in residents) + sum(m.need.get(device, 0) for m in self.loading)

    def held(self, device: str) -> int:
        caches = sum(self.caches.values()) if device == HOST_RAM else 0
        return self.planned(device) + caches

    def short(self, need) -> list[str]:
        return [d for d, b in need.items() if d in self.budget and self.held(d) + b > self.budget[d]]

    def room(self, keep_idle: bool) -> dict:
        """What the budget leaves per device once the caches yield and, unless
        `keep_idle`, the idle models are gone."""
        kept = [r for r in self.residents.values() if r.active or keep_idle]
        return {d: max(0, b - self.planned(d, kept)) for d, b in self.budget.items()}

    def rpc_holders(self, rpc: frozenset) -> list[str]:
        return [r.name for r in self.residents.values() if r.rpc & rpc]

    def shortage(self, device: str, need: int) -> str:
        return (f"it needs {gib(need)} on {device} beside the {gib(self.held(device))} resident models hold, "
                f"within a budget of {gib(self.budget[device])}")

    def why_full(self, need, short, holders, replanned: bool) -> str:
        if short:
            return "; ".join(self.shortage(d, need[d]) for d in short) + \
                (" (a plan with fit does not fit either)" if replanned else "")
        if holders:
            return f"{holders[0]!r} holds the same ggml-rpc-server, which serves one client at a time"
        loading = f" and {len(self.loading)} loading" if self.loading else ""
        return f"{len(self.residents)} models are resident{loading} (--max-models {self.limits.max_models})"


def _replan(books: _Books, replan: Replan | None, new: Newcomer, need, room: dict, why: str):
    """The newcomer planned with fit into `room`, if that fits."""
    found = replan(new.name, room) if replan else None
    if found is None or any(b > room.get(d, b) for d, b in found[0].items()):
        return None
    moved = ", ".join(f"{d} {need.get(d, 0) / 2**30:.2f} -> {gib(b)}" for d, b in found[0].items())
    books.log.append(f"re-planned {new.name!r} with fit ({why}): {moved}")
    return found


def _cut_caches(books: _Books, need) -> list[tuple[str, int]]:
    """Residents' conversation caches give host RAM back, largest first, until
    `need` fits there or they are empty."""
    cuts = []
    if HOST_RAM not in books.budget:
        return cuts
    for name in sorted(books.caches, key=lambda n: -books.caches[n]):
        over = books.held(HOST_RAM) + need.get(HOST_RAM, 0) - books.budget[HOST_RAM]
        if over <= 0 or not books.caches[name]:
            break
        books.caches[name] = max(0, books.caches[name] - over)
        cuts.append((name, books.caches[name]))
        books.log.append(f"conversation cache of {name!r} cut to {mib(books.caches[name])}: "
                         "host RAM for models")
    return cuts


def admit(residents, loading, new: Newcomer, limits: Limits, replan: Replan | None = None) -> Decision:
    """What admitting `new` takes, or Unavailable naming why it cannot load now."""
    books = _Books(residents, loading, limits)
    busy_rpc = [m.name for m in books.loading if m.rpc & new.rpc]
    if busy_rpc:
        raise Unavailable(f"cannot load {new.name!r}: {busy_rpc[0]!r} is loading on the same ggml-rpc-server, "
                          "which serves one client at a time", RETRY_S)
    need, plan = dict(new.need), None
    if limits.policy == "offload" and books.short(need) and \
            (found := _replan(books, replan, new, need, books.room(keep_idle=True), "policy offload: residents stay")):
        need, plan = found
    over = {d: b for d, b in need.items() if d in books.budget and b > books.budget[d]}
    if over:
        found = _replan(books, replan, new, need, dict(books.budget), "its own plan is over the budget")
        if found is None:
            d, b = next(iter(over.items()))
            raise Unavailable(f"cannot load {new.name!r}: its plan needs {gib(b)} on {d}, more than the server's "
                              f"budget of {gib(books.budget[d])} there, even with fit")
        need, plan = found
    room = books.room(keep_idle=False)
    if any(b > room.get(d, b) for d, b in need.items()):     # unloading every idle model would not do
        found = _replan(books, replan, new, need, room, "the busy models leave too little")
        if found is None:
            why = books.why_full(need, books.short(need), [], replan is not None)
            raise Unavailable(f"cannot load {new.name!r}: {why}, and every resident model that could make room "
                              "is busy", RETRY_S)
        need, plan = found
    cuts = _cut_caches(books, need)
    unload = []
    while len(books.residents) + len(books.loading) >= limits.max_models or books.short(need) or \
            books.rpc_holders(new.rpc):
        short, holders = books.short(need), books.rpc_holders(new.rpc)
        idle = [r for r in books.residents.values() if r.active == 0 and (r.name in holders or not holders)]
        if not idle:
            why = books.why_full(need, short, holders, replan is not None)
            raise Unavailable(f"cannot load {new.name!r}: {why}, and every resident model is busy", RETRY_S)
        victim = min(idle, key=lambda r: r.last_used)
        del books.residents[victim.name]
        books.caches.pop(victim.name, None)
        reason = f"memory on {', '.join(short)}" if short else \
            "its ggml-rpc-server serves one client at a time" if holders else f"--max-models {limits.max_models}"
        unload.append((victim.name, f"unloading {victim.name!r} (least recently used) to make room for "
                                    f"{new.name!r}: {reason}"))
    cache = new.cache_wanted
    if HOST_RAM in books.budget:
        cache = max(0, min(cache, books.budget[HOST_RAM] - books.held(HOST_RAM) - need.get(HOST_RAM, 0)))
    return Decision(need, plan, tuple(unload), tuple((n, c) for n, c in cuts if n in books.residents), cache,
                    tuple(books.log))
