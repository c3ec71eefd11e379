"""The models a server holds, loaded on demand: one supervised worker
process per resident model (worker/supervisor.py), as Ollama runs a runner per model.

A request naming a model that is not resident loads it (requests for that
model wait; requests for others go on). A model stays resident for its
keep-alive after its last request: Ollama's `keep_alive` (per request, or
the server's --keep-alive, default 5 minutes; 0 unloads after the request, a
negative value keeps it). Whether a newcomer fits, and what leaves to make
room, is admission.py's pure decision (--max-models, the memory budget per
device, the policy unload/offload, ggml-rpc-servers held, conversation
caches); this module applies it: it unloads the models it names, cuts the
caches it names and starts the newcomer's worker through `worker_factory`
(the Supervisor; tests give a fake one). Unloading ends the worker process,
which returns all of its memory to the system.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ... import defaults
from ...errors import ShimmyError, Unavailable
from ...placement.plan import HOST_RAM
from ..worker.supervisor import Supervisor, WorkerSpec
from .admission import POLICIES, Decision, Holder, Limits, Loading, Newcomer, Replan, admit
from .threads import thread_shares

logger = logging.getLogger("shimmy_py.server")
FOREVER = math.inf


class LoadFailed(ShimmyError):
    """A model's worker could not load it (llama.cpp's reason in the message)."""


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
                 replan_for: Replan | None = None, policy: str = "unload",
                 worker_factory: Callable[[WorkerSpec], Supervisor] = Supervisor, admit_wait: float = 0.0,
                 cores: int | None = None):
        if policy not in POLICIES:
            raise ShimmyError(f"unknown admission policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.spec_for, self.keep_alive_for = spec_for, keep_alive
        self.need_for, self.replan_for = need_for, replan_for   # (name, room per device) -> (need, Plan) or None
        self.limits = Limits(budget or {}, max_models, policy)
        self.worker_factory, self.admit_wait = worker_factory, admit_wait
        self.cores = cores or defaults.threads()   # shared by the models computing at once (threads.py)
        self._threads_lock = threading.Lock()      # one share-out at a time, so that the last one told wins
        self._loading: dict[str, Loading] = {}   # what models being loaded will hold (their cache on the host)
        self._unloading: dict[str, Resident] = {}  # unloaded models whose process has not ended yet
        self.residents: dict[str, Resident] = {}
        self.stats = PoolStats()
        self.gone = Counter()           # restarts, stalls and engine counters of models since unloaded (metrics)
        self._lock = threading.Condition()
        self._stopping = False
        threading.Thread(target=self._reap, name="shimmy-keep-alive", daemon=True).start()

    @property
    def budget(self) -> dict:
        return dict(self.limits.budget)

    @property
    def max_models(self) -> int:
        return self.limits.max_models

    def _log(self, message: str) -> None:
        logger.info(message)               # `serve` shows these: decisions an operator wants to see
        self.stats.reasons = (self.stats.reasons + [message])[-20:]

    # --- requests -------------------------------------------------------------------
    def acquire(self, name: str, keep_alive: float | None = None) -> Resident:
        """The resident model `name`, loaded if need be; counts the request.
        While admission says the others are busy, it waits up to `admit_wait`
        seconds for one to go idle (as Ollama queues such a request) before
        the 503."""
        resident = self._acquire(name, keep_alive)
        self._share_threads()       # before the request reaches its worker
        return resident

    def _acquire(self, name: str, keep_alive: float | None) -> Resident:
        with self._lock:
            while name in self._loading:         # another request is loading it: wait for that
                self._lock.wait()
            resident = self.residents.get(name)
            if resident is not None:
                resident.active += 1
                self._set_keep_alive(resident, keep_alive)
                return resident
        need = self.need_for(name) if self.need_for and self.limits.budget else {}
        deadline = time.monotonic() + self.admit_wait
        with self._lock:
            while True:
                # a model's memory is free only once its process has ended: a newcomer
                # waits for the unloads in progress (the count never exceeds --max-models)
                while name in self._loading or self._unloading:
                    self._lock.wait(1.0)
                if name in self.residents:            # loaded by another request meanwhile
                    resident = self.residents[name]
                    resident.active += 1
                    return resident
                spec = self.spec_for(name)
                rpc = frozenset(spec.options.placement.rpc + spec.options.placement.host_ram)   # one client each
                try:
                    decision = self._admit(Newcomer(name, need, rpc, spec.cache_bytes))
                    break
                except Unavailable as e:
                    left = deadline - time.monotonic()
                    if e.retry_after is None or left <= 0 or self._stopping:
                        raise
                    self._lock.wait(min(left, 1.0))       # a release or an unload notifies
            with_cache = {**decision.need, HOST_RAM: decision.need.get(HOST_RAM, 0) + decision.cache}
            self._loading[name] = Loading(name, with_cache, rpc)
        victims = [n for n, _ in decision.unload]
        try:
            with self._lock:   # the memory it was admitted into is free once their processes have ended
                self._lock.wait_for(lambda: not any(v in self._unloading for v in victims), timeout=120)
            resident = self._load(name, spec, keep_alive, decision, rpc)
        finally:
            with self._lock:
                self._loading.pop(name, None)
                self._lock.notify_all()
        return resident

    def _admit(self, new: Newcomer) -> Decision:
        """Under the lock: admission's decision, applied (unloads, cache cuts, the log)."""
        holders = [Holder(r.name, r.need, r.active, r.last_used, r.rpc, r.cache) for r in self.residents.values()]
        decision = admit(holders, list(self._loading.values()), new, self.limits, self.replan_for)
        for message in decision.log:
            self._log(message)
        for name, cache in decision.cache_cuts:
            r = self.residents[name]
            r.cache = cache
            r.supervisor.limit_cache(cache)
        for name, reason in decision.unload:
            self._stop_later(self.residents.pop(name), reason)
        return decision

    def release(self, resident: Resident, keep_alive: float | None = None) -> None:
        with self._lock:
            resident.active -= 1
            resident.last_used = time.monotonic()
            self._set_keep_alive(resident, keep_alive)
            unload = resident.active == 0 and resident.keep_alive == 0
            self._lock.notify_all()               # a newcomer waiting for an idle model
        self._share_threads()
        if unload:
            self.unload(resident.name, "keep_alive 0: unloaded after its request")

    def _share_threads(self) -> None:
        """Tells each resident worker whose share of the cores changed its new
        thread count (threads.py): the models computing at once never put
        more threads on the CPU than it has cores."""
        with self._threads_lock:
            with self._lock:
                residents = list(self.residents.values())
                active = [r.name for r in residents if r.active]
            wanted = {r.name: r.supervisor.spec.options.threads for r in residents}
            shares = thread_shares(wanted, active, self.cores)
            for r in residents:
                if shares[r.name] != (r.supervisor.threads or wanted[r.name]):
                    r.supervisor.share_threads(shares[r.name])

    def _set_keep_alive(self, resident: Resident, keep_alive: float | None) -> None:
        if keep_alive is not None:
            resident.keep_alive = keep_alive

    # --- loading and unloading ----------------------------------------------------------
    def held(self, device: str) -> int:
        """Bytes the resident and loading models' plans (and, on the host, their
        conversation caches) hold on `device`."""
        cache = sum(r.cache for r in self.residents.values()) if device == HOST_RAM else 0
        return sum(r.need.get(device, 0) for r in [*self.residents.values(), *self._loading.values()]) + cache

    def _load(self, name: str, spec: WorkerSpec, keep_alive: float | None, decision: Decision,
              rpc: frozenset) -> Resident:
        if decision.plan is not None:  # re-planned to fit: the worker loads this plan, not its own options
            spec = replace(spec, options=spec.options.with_plan(decision.plan))
        supervisor = self.worker_factory(replace(spec, cache_bytes=decision.cache))
        t0 = time.monotonic()
        self._log(f"loading {name!r}")
        try:
            supervisor.start()
        except ShimmyError as e:
            raise LoadFailed(f"model {name!r} failed to load: {e}") from None
        now = time.monotonic()
        size = Path(spec.model_path).stat().st_size
        resident = Resident(name, supervisor, size, now, now,
                            self.keep_alive_for(name) if keep_alive is None else keep_alive, active=1,
                            need=decision.need, rpc=rpc, cache=decision.cache)
        with self._lock:
            self.residents[name] = resident
            self.stats.loads += 1
            self.stats.load_seconds += now - t0
        self._log(f"loaded {name!r} in {now - t0:.1f} s")
        return resident

    def preload(self, name: str, keep_alive: float = FOREVER) -> Resident:
        """Loads `name` now (the server's --model), resident until told otherwise."""
        resident = self._acquire(name, keep_alive)
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
        """Under the lock: the worker stops on a thread of its own, and what it
        holds stays counted (newcomers wait, admission.py never sees it gone)
        until its process has ended and returned its memory."""
        self._log(message)
        self.stats.unloads += 1
        w = resident.supervisor
        self.gone.update({"restarts": w.restarts, "stalls": w.stalls, **w.counters()})
        self._unloading[resident.name] = resident

        def stop() -> None:
            try:
                w.stop()
            finally:
                with self._lock:
                    self._unloading.pop(resident.name, None)
                    self._lock.notify_all()
        threading.Thread(target=stop, name="shimmy-unload", daemon=True).start()

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
        with self._lock:
            self._lock.wait_for(lambda: not self._unloading, timeout=60)

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
                        "kv_bytes": r.supervisor.info.get("kv", {}),     # the KV cache per device, as planned
                        "cache_ram_bytes": r.cache,
                        "active_requests": r.active, "idle_s": round(now - r.last_used, 1) if not r.active else 0.0,
                        "expires_at": None if expires is None else wall + (expires - now),
                        "ready": r.supervisor.ready.is_set(), "restarts": r.supervisor.restarts,
                        # what its last step ran on (its share of the cores while others compute: threads.py)
                        "threads": (r.supervisor.stats or {}).get("threads"),
                        "context_length": r.supervisor.info.get("n_ctx"),
                        "streaming": streaming(r.supervisor.info.get("tiers"), r.supervisor.stats or {}),
                        "predicted": r.supervisor.info.get("predicted")})
        return out


def streaming(tiers: dict | None, stats: dict) -> dict | None:
    """A streaming model's plan (resident and streamed bytes, expected reads)
    beside what its streamer measured: file bytes per token and the miss rate."""
    if not tiers:
        return None
    routed, tokens = stats.get("stream_routed", 0), stats.get("stream_tokens", 0)
    return {**tiers, "file_bytes_per_token": round(stats.get("stream_file_bytes", 0) / tokens) if tokens else None,
            "miss_rate": round(stats.get("stream_missed", 0) / routed, 4) if routed else None}
