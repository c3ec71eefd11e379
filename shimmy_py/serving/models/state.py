"""What the server's handlers share (State): the catalog of names, the plans
of what each model loads with, the pool of resident models, metrics, and the
requests in flight with their leases."""
from __future__ import annotations

import threading

from ...errors import ShimmyError, Unavailable
from ..config import ServeConfig
from .catalog import Catalog
from .metrics import Metrics
from .plans import ModelPlans
from .pool import ModelPool


class State:
    """What the handlers share: the catalog of names (catalog.py), what each
    model loads with (plans.py), the pool of resident models, metrics, and
    the requests in flight, each holding a Lease on its model."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.load_error: str | None = None
        self.metrics = Metrics()
        self.catalog = Catalog(config.model_path, config.known_paths)
        self.plans = ModelPlans(config, self.catalog)
        self.pool = ModelPool(self.plans.spec, self.plans.keep_alive, config.max_models, self.plans.need,
                              config.memory_budget, self.plans.replan, config.admission, admit_wait=config.admit_wait)
        self.inflight = 0
        self.loaded = threading.Event()    # the --model's first load has ended (until then requests wait)
        self.idle = threading.Condition()
        self.plans.check_settings()

    @property
    def main(self):
        """The --model's resident entry, or None while it is not loaded (or there is none)."""
        name = self.catalog.name
        return self.pool.residents.get(self.catalog.canonical(name)) if name else None

    @property
    def ready(self) -> threading.Event:
        main = self.main
        return main.supervisor.ready if main is not None else threading.Event()

    def enter(self) -> None:
        with self.idle:
            self.inflight += 1

    def leave(self) -> None:
        with self.idle:
            self.inflight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.inflight == 0, timeout)

    def load(self) -> None:
        """Loads the --model now (resident until the server stops); without one, nothing yet."""
        if self.catalog.name is None:
            return
        try:
            self.pool.preload(self.catalog.canonical(self.catalog.name))
            self.load_error = None
            self.loaded.set()     # unloaded later (keep_alive 0), it loads again on demand as any model
        except ShimmyError as e:
            self.load_error = str(e)
            raise ShimmyError(self.load_error) from None

    def lease(self, requested: str | None, keep_alive: float | None = None, context: int | None = None) -> "Lease":
        """A request's hold on the model it names, loaded if need be. A
        `context` (Ollama's num_ctx) above the usual one loads a model that is
        not resident at that context, as Ollama loads it, where admission lets
        it (else at the usual one); a resident model serves it in the context
        it holds."""
        name = self.catalog.resolve(requested)
        if name not in self.pool.residents:
            self.catalog.check_file(name)
        main = self.catalog.name
        if main is not None and name == self.catalog.canonical(main) and self.main is None and not self.loaded.is_set():
            raise Unavailable(self.load_error or "the model is still loading", 5)
        self.enter()
        try:
            resident = self._acquire(name, keep_alive, context)
        except BaseException:
            self.leave()
            raise
        return Lease(self, name, resident, keep_alive)

    def _acquire(self, name: str, keep_alive: float | None, context: int | None):
        """The pool's resident `name`, loaded if need be: at the asked context
        where that is larger than the usual one and admitted. A resident model
        holding less than the asked context is loaded again at it when nothing
        runs on it (as Ollama reloads); while it computes, it serves the
        request in the context it holds."""
        larger = self.plans.context_for(name, context)
        resident = self.pool.residents.get(name)
        if resident is not None and larger is not None and larger > (resident.supervisor.info.get("n_ctx") or 0):
            self.pool.unload(name, f"loading it again at the context a request asks, {larger} tokens")
        if name in self.pool.residents:       # not asked for more, or busy: as it is
            return self.pool.acquire(name, keep_alive)
        if larger is None:
            self.plans.asked_ctx.pop(name, None)      # loaded without an ask: the usual context
            return self.pool.acquire(name, keep_alive)
        self.plans.asked_ctx[name] = larger
        try:
            return self.pool.acquire(name, keep_alive)
        except Unavailable:               # no room for the larger context: the usual one
            self.plans.asked_ctx.pop(name, None)
            return self.pool.acquire(name, keep_alive)

    def close(self) -> None:
        """Ends open streams and stops every worker (their exit frees all native memory)."""
        self.pool.close()


class Lease:
    """A request's hold on a resident model: it stays loaded (and the server's
    shutdown waits for it) until the lease is closed, once."""

    def __init__(self, state: State, name: str, resident, keep_alive: float | None):
        self.state, self.name, self.resident, self.keep_alive = state, name, resident, keep_alive
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.state.pool.release(self.resident, self.keep_alive)
        finally:
            self.state.leave()

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
