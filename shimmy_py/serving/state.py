"""What `serve` runs with (ServeConfig) and what its handlers share (State):
the models' names, the pool of resident models, metrics, requests in flight."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import defaults
from ..errors import ShimmyError
from .api import ApiError
from .http import HttpPolicy
from .metrics import Metrics
from .models_config import ModelSettings
from .names import name_table
from .pool import ModelPool
from .supervisor import WorkerSpec

CONTROL_THREADS = 8             # handler threads beyond the requests a server holds (health, metrics, models)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass
class ServeConfig:
    """What `serve` runs with; each default's reason is in defaults.py."""
    model_path: Path | None            # the model loaded at start; None: every discovered model, on demand
    host: str = defaults.HOST
    port: int = defaults.PORT
    ctx: int = defaults.N_CTX          # context of each request (the KV cache holds ctx x parallel)
    threads: int | None = None         # None: defaults.threads()
    parallel: int = defaults.PARALLEL
    queue: int = defaults.QUEUE
    api_key: str | None = None
    max_body: int = defaults.MAX_BODY
    model_kwargs: dict = field(default_factory=dict)  # placement options for Model
    known_paths: tuple = ()        # other discovered files, listed by /api/models
    cors_origin: str | None = None     # None: no CORS headers; "*" or an origin to allow browsers
    allowed_hosts: tuple = ()          # Host names beyond the bound address and loopback's
    max_pending: int = defaults.MAX_PENDING_CONNECTIONS
    header_timeout: float = defaults.HEADER_TIMEOUT
    keep_alive: float = defaults.KEEP_ALIVE_S      # seconds an on-demand model stays after its last request
    settings: dict = field(default_factory=dict)   # per model name: models_config.ModelSettings (--config)
    memory_budget: dict | None = None              # device -> bytes resident models may hold; None: no check
    cache_ram: int = defaults.CACHE_RAM            # bytes of host RAM per model for conversations (0: off)
    max_models: int = defaults.MAX_MODELS
    admission: str = defaults.ADMISSION            # "unload" idle models first, or "offload" the newcomer first

    def handler_threads(self) -> int:
        """Each running or queued request holds a handler thread; a few more
        answer health, metrics and model lists meanwhile."""
        return self.parallel + self.queue + CONTROL_THREADS

    def policy(self) -> HttpPolicy:
        """Host check: on loopback, the Host header must name loopback (or an
        allowed host); bound to all interfaces, any name unless some are given."""
        wildcard = self.host in ("0.0.0.0", "::", "")
        if wildcard and not self.allowed_hosts:
            hosts = None
        else:
            hosts = frozenset({self.host.lower(), *LOOPBACK_NAMES, *(h.lower() for h in self.allowed_hosts)})
        return HttpPolicy(self.max_body, self.cors_origin, hosts, self.header_timeout)

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


class State:
    """What the handlers share: the models' names, the pool of resident models, metrics."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.load_error: str | None = None
        self.metrics = Metrics()
        main = [config.model_path] if config.model_path is not None else []
        self.catalog = name_table([*main, *config.known_paths])   # every name -> file
        self.names = sorted(name_table(main), key=len, reverse=True)
        self.name = self.names[0] if self.names else None   # the --model's: requests without "model" get it
        # what a client may see instead of a path: the model's name
        self.path_names = {}
        for name, path in sorted(self.catalog.items(), key=lambda kv: -len(kv[0])):
            self.path_names.setdefault(str(Path(path).resolve()), name)
            self.path_names.setdefault(str(path), name)
        self.pool = ModelPool(self._spec, self._keep_alive, config.max_models, self._need,
                              config.memory_budget, self._replan, config.admission)
        self.inflight = 0
        self.idle = threading.Condition()
        self._descriptions: dict = {}
        self._devices: dict[tuple, list] = {}
        kw = config.model_kwargs
        if kw.get("rpc") or kw.get("host_ram"):   # asked now, before any worker holds a ggml-rpc-server
            self._devices_for(tuple(kw.get("rpc", ())), tuple(kw.get("host_ram", ())))

    def _devices_for(self, rpc: tuple, host_ram: tuple) -> list:
        """The devices a model on these RPC servers is planned on, found once: a
        ggml-rpc-server serves one client at a time, so once a model's worker
        holds it, a handshake from this process would wait for that model to
        leave."""
        from ..placement.devices import device_specs
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

    def _spec(self, name: str) -> WorkerSpec:
        c, own = self.config, self.settings_for(name)
        path = self.catalog[name]
        kwargs = dict(c.model_kwargs)
        if c.model_path is None or Path(path) != Path(c.model_path) or own.placement:
            kwargs.pop("placement", None)    # the --model's plan; others are planned by their worker
        for key in ("cpu_moe", "n_cpu_moe", "fit", "vram_budget", "overrides") if own.placement else ():
            kwargs.pop(key, None)            # the model's own settings replace the server's flags
        kwargs.update(own.placement)
        ctx, parallel = own.ctx or c.ctx, own.parallel or c.parallel
        return WorkerSpec(str(path), ctx * parallel, parallel, c.threads, c.queue, kwargs, c.cache_ram)

    def describe(self, path: Path):
        """What the file at `path` is, from its header (cached; None if unreadable)."""
        cache = self._descriptions
        if path not in cache:
            from .discovery import Found, describe
            try:
                cache[path] = describe(Found(path.stem.lower(), path, "", 0))
            except ShimmyError:
                cache[path] = None
        return cache[path]

    def _keep_alive(self, name: str) -> float:
        own = self.settings_for(name).keep_alive
        return own if own is not None else self.config.keep_alive

    def _options(self, spec: WorkerSpec, **changes):
        """The placement options a worker of `spec` plans with (Model's arguments)."""
        from dataclasses import replace

        from ..placement.options import PlacementOptions
        kw = spec.model_kwargs
        capacity = kw.get("device_capacity", ())
        options = PlacementOptions(
            kw.get("cpu_moe", False), kw.get("n_cpu_moe"), kw.get("fit", False), kw.get("vram_budget"),
            tuple(kw.get("overrides", ())), tuple(kw.get("rpc", ())), None, spec.n_ctx,
            tuple(capacity.items()) if isinstance(capacity, dict) else tuple(capacity),
            kw.get("flash_attn", defaults.FLASH_ATTN) != "off", tuple(kw.get("host_ram", ())), n_seq=spec.n_seq_max)
        return replace(options, **changes)

    def _need(self, name: str) -> dict:
        """Bytes per device the model's plan holds: what admission weighs."""
        from ..placement.make import make_plan
        spec = self._spec(name)
        options = self._options(spec)
        plan = spec.model_kwargs.get("placement") or \
            make_plan(spec.model_path, options, self._devices_for(options.rpc, options.host_ram))
        return {d.name: d.total_bytes for d in plan.devices}

    def _replan(self, name: str, room: dict):
        """The model planned with fit into `room` (bytes per device; the budget's
        margin is already taken), as (need, Plan), or None where even that does
        not fit. The model's own -ot overrides stay."""
        from dataclasses import replace

        from ..errors import PlacementError
        from ..placement.make import make_plan
        spec = self._spec(name)
        options = self._options(spec, cpu_moe=False, n_cpu_moe=None, fit=True, vram_budget=None, fit_margin=False)
        devices = self._devices_for(options.rpc, options.host_ram)
        names = {d.name for d in devices}
        options = replace(options, device_capacity=tuple((d, b) for d, b in room.items() if d in names))
        try:
            plan = make_plan(spec.model_path, options, devices)
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
        except ApiError as e:
            self.load_error = e.message
            raise ShimmyError(e.message) from None

    def resolve(self, requested: str | None) -> str:
        if requested is None:
            files = set(self.catalog.values())
            if self.name is None and len(files) != 1:
                raise ApiError(400, f"'model' is required: this server serves {len(files)} models "
                               "(GET /api/models lists them)")
            return self.canonical(self.name or next(iter(self.catalog)))
        if requested.lower() in self.catalog:
            return self.canonical(requested.lower())
        raise ApiError(404, f"model {requested!r} not found; this server serves "
                       f"{', '.join(repr(n) for n in sorted(self.catalog))}", "not_found_error")

    def close(self) -> None:
        """Ends open streams and stops every worker (their exit frees all native memory)."""
        self.pool.close()


