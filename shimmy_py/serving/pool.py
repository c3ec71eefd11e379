"""The models a server holds, loaded on demand: one supervised worker
process per resident model (supervisor.py), as Ollama runs a runner per model.

A request naming a model that is not resident loads it (requests for that
model wait; requests for others go on). A model stays resident for its
keep-alive after its last request: Ollama's `keep_alive` (per request, or
the server's --keep-alive, default 5 minutes; 0 unloads after the request, a
negative value keeps it). Beyond --max-models the least recently used idle
model is unloaded to make room; when every resident model is busy the
request gets 503. With a memory budget per device, a model is admitted only
where its plan fits beside what the resident models hold. To make room, per
the admission policy:
  unload   (default, as Ollama) idle models are unloaded, least recently used
           first; only when that cannot make room is the newcomer re-planned
           more offloaded (`fit` within what is left on each device);
  offload  the newcomer is re-planned into what is left first, so that the
           resident models stay; idle ones are unloaded only if even that fails.
A model that cannot fit either way is refused with the figures, before
anything is loaded. Unloading ends the worker process, which returns all of
its memory to the system.

Host RAM is shared with the conversation caches (--cache-ram, per model): a
newcomer's cache gets what is left of the host budget after the models, up to
--cache-ram, and the residents' caches shrink (their oldest conversations go)
before any model is unloaded for host RAM: a model is worth more than a cache.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import ShimmyError
from ..placement.plan import CPU as HOST  # host RAM's device name in plans and budgets
from .api import ApiError
from .supervisor import Supervisor, WorkerSpec

logger = logging.getLogger("shimmy_py.server")
FOREVER = math.inf
POLICIES = ("unload", "offload")


@dataclass
class Resident:
    """A loaded model: its worker and when it may be unloaded."""
    name: str
    supervisor: Supervisor
    size_bytes: int
    loaded_at: float
    last_used: float
    keep_alive: float                  # seconds after the last request; FOREVER; 0: after the request
    active: int = 0
    need: dict = field(default_factory=dict)   # bytes per device its plan holds (weights, KV cache, reserve)
    rpc: frozenset = frozenset()       # the ggml-rpc-servers it holds: each serves one client at a time
    cache: int = 0                     # host RAM its conversation cache may hold

    def expires_at(self) -> float | None:
        if self.active or self.keep_alive == FOREVER:
            return None
        return self.last_used + self.keep_alive


@dataclass
class PoolStats:
    loads: int = 0
    unloads: int = 0
    load_seconds: float = 0.0
    reasons: list = field(default_factory=list)   # the last decisions, for the log and /api/ps


class ModelPool:
    """Resident models by name; `acquire` loads, `release` schedules the unload."""

    def __init__(self, spec_for: Callable[[str], WorkerSpec], keep_alive: Callable[[str], float], max_models: int,
                 need_for: Callable[[str], dict] | None = None, budget: dict | None = None,
                 replan_for: Callable[[str, dict], tuple | None] | None = None, policy: str = "unload"):
        if policy not in POLICIES:
            raise ShimmyError(f"unknown admission policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.spec_for, self.keep_alive_for, self.max_models = spec_for, keep_alive, max_models
        self.need_for, self.budget = need_for, budget or {}
        self.replan_for, self.policy = replan_for, policy   # (name, room per device) -> (need, Plan) or None
        self._reserved: dict[str, dict] = {}   # what models being loaded will hold (their cache on "CPU")
        self._reserved_rpc: dict[str, frozenset] = {}
        self.residents: dict[str, Resident] = {}
        self.stats = PoolStats()
        self._lock = threading.Condition()
        self._loading: set[str] = set()
        self._stopping = False
        threading.Thread(target=self._reap, name="shimmy-keep-alive", daemon=True).start()

    def _log(self, message: str) -> None:
        logger.info(message)               # `serve` shows these: decisions an operator wants to see
        self.stats.reasons = (self.stats.reasons + [message])[-20:]

    # --- requests -------------------------------------------------------------------
    def acquire(self, name: str, keep_alive: float | None = None) -> Resident:
        """The resident model `name`, loaded if need be; counts the request."""
        with self._lock:
            while name in self._loading:         # another request is loading it: wait for that
                self._lock.wait()
            resident = self.residents.get(name)
            if resident is not None:
                resident.active += 1
                self._set_keep_alive(resident, keep_alive)
                return resident
        need = self.need_for(name) if self.need_for and self.budget else {}
        with self._lock:
            while name in self._loading:
                self._lock.wait()
            if name in self.residents:            # loaded by another request meanwhile
                resident = self.residents[name]
                resident.active += 1
                return resident
            spec = self.spec_for(name)
            rpc = frozenset(spec.model_kwargs.get("rpc", ()))
            need, plan = self._make_room(name, need, rpc)
            cache = self._cache_for(need, spec.cache_bytes)
            self._loading.add(name)
            self._reserved[name] = {**need, HOST: need.get(HOST, 0) + cache}
            self._reserved_rpc[name] = rpc
        try:
            resident = self._load(name, spec, keep_alive, need, rpc, plan, cache)
        finally:
            with self._lock:
                self._loading.discard(name)
                self._reserved.pop(name, None)
                self._reserved_rpc.pop(name, None)
                self._lock.notify_all()
        return resident

    def release(self, resident: Resident, keep_alive: float | None = None) -> None:
        with self._lock:
            resident.active -= 1
            resident.last_used = time.monotonic()
            self._set_keep_alive(resident, keep_alive)
            unload = resident.active == 0 and resident.keep_alive == 0
        if unload:
            self.unload(resident.name, "keep_alive 0: unloaded after its request")

    def _set_keep_alive(self, resident: Resident, keep_alive: float | None) -> None:
        if keep_alive is not None:
            resident.keep_alive = keep_alive

    # --- loading and unloading ----------------------------------------------------------
    def held(self, device: str) -> int:
        """Bytes the resident and loading models' plans (and, on the host, their
        conversation caches) hold on `device`."""
        cache = sum(r.cache for r in self.residents.values()) if device == HOST else 0
        return self._planned(device, self.residents.values()) + cache

    def _planned(self, device: str, residents) -> int:
        """Bytes the plans of `residents` and of the models being loaded hold on `device`."""
        return sum(r.need.get(device, 0) for r in residents) + sum(n.get(device, 0) for n in self._reserved.values())

    def _short(self, need: dict) -> list[str]:
        return [d for d, b in need.items() if d in self.budget and self.held(d) + b > self.budget[d]]

    def _room(self, keep_idle: bool) -> dict:
        """What the budget leaves on each device once the conversation caches
        yield and, unless `keep_idle`, the idle models are unloaded."""
        kept = [r for r in self.residents.values() if r.active or keep_idle]
        return {d: max(0, b - self._planned(d, kept)) for d, b in self.budget.items()}

    def _shortage(self, device: str, need: int) -> str:
        return (f"it needs {need / 2**30:.2f} GiB on {device} beside the {self.held(device) / 2**30:.2f} GiB "
                f"resident models hold, within a budget of {self.budget[device] / 2**30:.2f} GiB")

    def _rpc_holders(self, rpc: frozenset) -> list[str]:
        """Resident models holding one of `rpc`: ggml-rpc-server serves one client at a
        time (its accept loop), so a second would wait for the first to leave."""
        return [r.name for r in self.residents.values() if r.rpc & rpc]

    def _cache_for(self, need: dict, wanted: int) -> int:
        """The newcomer's conversation cache: --cache-ram, or what is left of the host budget."""
        if HOST not in self.budget:
            return wanted
        return max(0, min(wanted, self.budget[HOST] - self.held(HOST) - need.get(HOST, 0)))

    def _shrink_caches(self, need: dict) -> None:
        """Under the lock: residents' conversation caches give host RAM back (the
        largest first) until `need` fits there, or they are empty."""
        if HOST not in self.budget:
            return
        for r in sorted(self.residents.values(), key=lambda r: -r.cache):
            over = self.held(HOST) + need.get(HOST, 0) - self.budget[HOST]
            if over <= 0 or not r.cache:
                return
            r.cache = max(0, r.cache - over)
            r.supervisor.limit_cache(r.cache)
            self._log(f"conversation cache of {r.name!r} cut to {r.cache / 2**20:.0f} MiB: host RAM for models")

    def _replan(self, name: str, need: dict, room: dict, why: str) -> tuple[dict, object] | None:
        """The newcomer planned with fit into `room`, if that fits; logged."""
        found = self.replan_for(name, room) if self.replan_for else None
        if found is None or any(b > room.get(d, b) for d, b in found[0].items()):
            return None
        moved = ", ".join(f"{d} {need.get(d, 0) / 2**30:.2f} -> {b / 2**30:.2f} GiB" for d, b in found[0].items())
        self._log(f"re-planned {name!r} with fit ({why}): {moved}")
        return found

    def _make_room(self, name: str, need: dict, rpc: frozenset = frozenset()) -> tuple[dict, object]:
        """Under the lock: what the newcomer will hold and its re-plan (None: its
        own plan), after unloading what the policy unloads; 503 when it cannot fit."""
        loading = [n for n, endpoints in self._reserved_rpc.items() if endpoints & rpc]
        if loading:
            raise ApiError(503, f"cannot load {name!r}: {loading[0]!r} is loading on the same ggml-rpc-server, "
                           "which serves one client at a time", "server_error", {"Retry-After": "5"})
        plan = None
        if self.policy == "offload" and self._short(need) and \
                (found := self._replan(name, need, self._room(keep_idle=True), "policy offload: residents stay")):
            need, plan = found
        over = {d: b for d, b in need.items() if d in self.budget and b > self.budget[d]}
        if over:
            found = self._replan(name, need, dict(self.budget), "its own plan is over the budget")
            if found is None:
                d, b = next(iter(over.items()))
                raise ApiError(503, f"cannot load {name!r}: its plan needs {b / 2**30:.2f} GiB on {d}, more than "
                               f"the server's budget of {self.budget[d] / 2**30:.2f} GiB there, even with fit",
                               "server_error")
            need, plan = found
        room = self._room(keep_idle=False)
        if any(b > room.get(d, b) for d, b in need.items()):     # unloading every idle model would not do
            found = self._replan(name, need, room, "the busy models leave too little")
            if found is None:
                raise ApiError(503, f"cannot load {name!r}: {self._why_full(name, need, self._short(need), [])}, "
                               "and every resident model that could make room is busy", "server_error",
                               {"Retry-After": "5"})
            need, plan = found
        self._shrink_caches(need)
        while len(self.residents) + len(self._loading) >= self.max_models or self._short(need) or \
                self._rpc_holders(rpc):
            short, holders = self._short(need), self._rpc_holders(rpc)
            idle = [r for r in self.residents.values() if r.active == 0 and (r.name in holders or not holders)]
            if not idle:
                raise ApiError(503, f"cannot load {name!r}: {self._why_full(name, need, short, holders)}, and "
                               "every resident model is busy", "server_error", {"Retry-After": "5"})
            victim = min(idle, key=lambda r: r.last_used)
            del self.residents[victim.name]
            reason = f"memory on {', '.join(short)}" if short else \
                "its ggml-rpc-server serves one client at a time" if holders else f"--max-models {self.max_models}"
            self._stop_later(victim, f"unloading {victim.name!r} (least recently used) to make room for {name!r}: "
                                     f"{reason}")
        return need, plan

    def _why_full(self, name: str, need: dict, short: list, holders: list) -> str:
        if short:
            return "; ".join(self._shortage(d, need[d]) for d in short) + \
                (" (a plan with fit does not fit either)" if self.replan_for else "")
        if holders:
            return f"{holders[0]!r} holds the same ggml-rpc-server, which serves one client at a time"
        return f"{len(self.residents)} models are resident (--max-models {self.max_models})"

    def _load(self, name: str, spec: WorkerSpec, keep_alive: float | None, need: dict, rpc: frozenset, plan=None,
              cache: int = 0) -> Resident:
        if plan is not None:         # re-planned to fit: the worker loads this plan, not its own options
            spec = replace(spec, model_kwargs={**spec.model_kwargs, "placement": plan})
        supervisor = Supervisor(replace(spec, cache_bytes=cache))
        t0 = time.monotonic()
        self._log(f"loading {name!r}")
        try:
            supervisor.start()
        except ShimmyError as e:
            raise ApiError(500, f"model {name!r} failed to load: {e}", "server_error") from None
        now = time.monotonic()
        size = Path(spec.model_path).stat().st_size
        resident = Resident(name, supervisor, size, now, now,
                            self.keep_alive_for(name) if keep_alive is None else keep_alive, active=1, need=need,
                            rpc=rpc, cache=cache)
        with self._lock:
            self.residents[name] = resident
            self.stats.loads += 1
            self.stats.load_seconds += now - t0
        self._log(f"loaded {name!r} in {now - t0:.1f} s")
        return resident

    def preload(self, name: str, keep_alive: float = FOREVER) -> Resident:
        """Loads `name` now (the server's --model), resident until told otherwise."""
        resident = self.acquire(name, keep_alive)
        with self._lock:
            resident.active -= 1
            resident.keep_alive = keep_alive
        return resident

    def unload(self, name: str, reason: str) -> None:
        with self._lock:
            resident = self.residents.get(name)
            if resident is None or resident.active:
                return
            del self.residents[name]
        self._stop_later(resident, f"unloading {name!r}: {reason}")

    def _stop_later(self, resident: Resident, message: str) -> None:
        self._log(message)
        self.stats.unloads += 1
        threading.Thread(target=resident.supervisor.stop, name="shimmy-unload", daemon=True).start()

    def _reap(self) -> None:
        while not self._stopping:
            time.sleep(0.5)
            now = time.monotonic()
            with self._lock:
                expired = [r.name for r in self.residents.values() if (e := r.expires_at()) is not None and e <= now]
            for name in expired:
                self.unload(name, "its keep_alive expired")

    def close(self) -> None:
        """Stops every worker (open streams end), waiting for each."""
        self._stopping = True
        with self._lock:
            residents, self.residents = list(self.residents.values()), {}
        for r in residents:
            r.supervisor.stop()

    # --- what is resident ---------------------------------------------------------------
    def snapshot(self) -> list[dict]:
        """Each resident model, for /api/ps."""
        now, wall = time.monotonic(), time.time()
        with self._lock:
            residents = list(self.residents.values())
        out = []
        for r in sorted(residents, key=lambda r: r.name):
            expires = r.expires_at()
            out.append({"name": r.name, "size_bytes": r.size_bytes,
                        "devices": r.supervisor.info.get("devices", {}), "planned_bytes": r.need,
                        "cache_ram_bytes": r.cache,
                        "active_requests": r.active, "idle_s": round(now - r.last_used, 1) if not r.active else 0.0,
                        "expires_at": None if expires is None else wall + (expires - now),
                        "ready": r.supervisor.ready.is_set(), "restarts": r.supervisor.restarts})
        return out
