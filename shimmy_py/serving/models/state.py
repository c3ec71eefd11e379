"""What the server's handlers share (State): the models' names, the options
each loads with, the pool of resident models, metrics, requests in flight."""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from ...errors import BrokenModel, GenerationError, NotFound, PlacementError, ShimmyError, Unavailable
from ...generation.options import ModelOptions
from ...placement.options import Strategy
from ..config import ServeConfig
from ..worker.supervisor import WorkerSpec
from .discovery import Found
from .metrics import Metrics
from .names import name_table
from .pool import ModelPool
from .settings import ModelSettings


class State:
    """What the handlers share: the models' names, the pool of resident models, metrics."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.load_error: str | None = None
        self.metrics = Metrics()
        known = list(config.known_paths)             # discovered models (Found: Ollama's name:tag) or paths
        main = [next((k for k in known if isinstance(k, Found) and Path(k.path) == Path(config.model_path)),
                     config.model_path)] if config.model_path is not None else []
        self.catalog = name_table([*main, *known])   # every name -> file
        self.names = sorted(name_table(main), key=len, reverse=True)
        self.name = self.names[0] if self.names else None   # the --model's: requests without "model" get it
        # what a client may see instead of a path: the model's name
        self.path_names = {}
        for name, path in sorted(self.catalog.items(), key=lambda kv: -len(kv[0])):
            self.path_names.setdefault(str(Path(path).resolve()), name)
            self.path_names.setdefault(str(path), name)
        self.pool = ModelPool(self._spec, self._keep_alive, config.max_models, self._need,
                              config.memory_budget, self._replan, config.admission, admit_wait=config.admit_wait)
        self.inflight = 0
        self.idle = threading.Condition()
        self._descriptions: dict = {}
        self._devices: dict[tuple, list] = {}
        placed = config.model.placement
        if placed.rpc or placed.host_ram:   # asked now, before any worker holds a ggml-rpc-server
            self._devices_for(placed.rpc, placed.host_ram)
        self._check_settings()

    def _check_settings(self) -> None:
        """Each --config model is one this server serves, and plans as its
        worker will plan it (a -ot pattern llama.cpp refuses, --n-cpu-moe
        beyond its layers, a device capacity naming no device): a wrong
        setting is an error at start-up, not a 500 at the first request."""
        for name in self.config.settings:
            if name not in self.catalog:
                raise ShimmyError(f"--config names model {name!r}, which this server does not serve (known: "
                                  f"{', '.join(sorted(self.catalog))})")
            if self.config.settings[name].model is None:
                continue
            try:
                self._need(name)
            except ShimmyError as e:
                raise ShimmyError(f"--config: model {name!r}: {e}") from None

    def _devices_for(self, rpc: tuple, host_ram: tuple) -> list:
        """The devices a model on these RPC servers is planned on, found once: a
        ggml-rpc-server serves one client at a time, so once a model's worker
        holds it, a handshake from this process would wait for that model to
        leave."""
        from ...placement.devices import device_specs
        found = (rpc, host_ram)
        if found not in self._devices:
            self._devices[found] = device_specs(rpc, host_ram=host_ram)
        return self._devices[found]

    def settings_for(self, name: str) -> ModelSettings:
        """--config's settings for the model `name` names (under any of its names)."""
        path = self.catalog[name]
        for n, p in self.catalog.items():
            if p == path and n in self.config.settings:
                return self.config.settings[n]
        return ModelSettings()

    def options_for(self, name: str) -> ModelOptions:
        """What the model `name` loads with: its --config table's options or the
        server's (with the --model's plan for the --model), sized for the
        server's context and parallel sequences (or its own)."""
        c, own = self.config, self.settings_for(name)
        options = own.model if own.model is not None else c.model
        if own.model is None and c.main_plan is not None and c.model_path is not None \
                and Path(self.catalog[name]) == Path(c.model_path):
            options = options.with_plan(c.main_plan)
        return c.sized(options, own.ctx, own.parallel)

    def _spec(self, name: str) -> WorkerSpec:
        c = self.config
        watchdog = c.watchdog if c.watchdog != float("inf") else 0.0
        return WorkerSpec(str(self.catalog[name]), self.options_for(name), c.queue, c.cache_ram, watchdog)

    def describe(self, path: Path):
        """What the file at `path` is, from its header (cached; None if unreadable)."""
        found = self._read_header(path)
        return None if isinstance(found, str) else found

    def _read_header(self, path: Path):
        """The file's description, or why it cannot be read (cached per file and size)."""
        from .discovery import Found, describe
        try:
            key = (path, path.stat().st_size, path.stat().st_mtime_ns)
        except OSError as e:
            return f"{path.name} is gone ({e.strerror or e})"
        cache = self._descriptions
        if key not in cache:
            try:
                cache[key] = describe(Found(path.stem.lower(), path, "", 0))
            except ShimmyError as e:
                cache[key] = str(e)
        return cache[key]

    def check_file(self, name: str) -> None:
        """A model whose file vanished or is not a GGUF it can load is named
        as such (404, 422), never loaded into a worker that would fail."""
        path = Path(self.catalog[name])
        if not path.exists():
            raise NotFound(f"model {name!r} is no longer there: its file {path.name} was removed since discovery")
        found = self._read_header(path)
        if isinstance(found, str):
            raise BrokenModel(f"model {name!r} cannot be used: {found}")

    def _keep_alive(self, name: str) -> float:
        own = self.settings_for(name).keep_alive
        return own if own is not None else self.config.keep_alive

    def _need(self, name: str) -> dict:
        """Bytes per device the model's plan holds: what admission weighs."""
        from ...placement.machine import make_plan
        placement = self.options_for(name).placement
        plan = make_plan(self.catalog[name], placement, self._devices_for(placement.rpc, placement.host_ram))
        return {d.name: d.total_bytes for d in plan.devices}

    def _replan(self, name: str, room: dict):
        """The model planned with fit into `room` (bytes per device; the budget's
        margin is already taken), as (need, Plan), or None where even that does
        not fit. The model's own -ot overrides stay."""
        from ...placement.machine import make_plan
        placement = self.options_for(name).placement
        devices = self._devices_for(placement.rpc, placement.host_ram)
        known = {d.name for d in devices}
        placement = replace(placement, strategy=Strategy("fit"), fit_margin=False,
                            device_capacity=tuple((d, b) for d, b in room.items() if d in known))
        try:
            plan = make_plan(self.catalog[name], placement, devices)
        except PlacementError:
            return None
        return {d.name: d.total_bytes for d in plan.devices}, plan

    def canonical(self, name: str) -> str:
        """The name a model is resident under: its file's own (longest) name."""
        path = self.catalog[name]
        return max((n for n, p in self.catalog.items() if p == path), key=len)

    @property
    def main(self):
        """The --model's resident entry, or None while it is not loaded (or there is none)."""
        return self.pool.residents.get(self.canonical(self.name)) if self.name else None

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
        if self.name is None:
            return
        try:
            self.pool.preload(self.canonical(self.name))
            self.load_error = None
        except ShimmyError as e:
            self.load_error = str(e)
            raise ShimmyError(self.load_error) from None

    def resolve(self, requested: str | None) -> str:
        """The resident name of the model a request names (the --model's, or the
        only model's, when it names none)."""
        if requested is None:
            files = set(self.catalog.values())
            if self.name is None and len(files) != 1:
                raise GenerationError(f"'model' is required: this server serves {len(files)} models "
                                      "(GET /api/models lists them)")
            return self.canonical(self.name or next(iter(self.catalog)))
        if requested.lower() in self.catalog:
            return self.canonical(requested.lower())
        raise NotFound(f"model {requested!r} not found; this server serves "
                       f"{', '.join(repr(n) for n in sorted(self.catalog))}")

    def lease(self, requested: str | None, keep_alive: float | None = None) -> "Lease":
        """A request's hold on the model it names, loaded if need be."""
        name = self.resolve(requested)
        if name not in self.pool.residents:
            self.check_file(name)
        if self.name is not None and name == self.canonical(self.name) and self.main is None:
            raise Unavailable(self.load_error or "the model is still loading", 5)
        self.enter()
        try:
            resident = self.pool.acquire(name, keep_alive)    # loads it if it is not resident
        except BaseException:
            self.leave()
            raise
        return Lease(self, name, resident, keep_alive)

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
