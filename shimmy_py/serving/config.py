"""What `serve` runs with, as one record (ServeConfig): the server's own
settings, each describing its flag (fields.py), and `model`, the
ModelOptions every model loads with (a model's own --config table over
them)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import defaults
from ..errors import ShimmyError
from ..fields import opt
from ..generation.options import ModelOptions, positive_int
from ..placement.plan import Plan
from ..sizes import parse_size
from .durations import parse_duration
from .http.policy import HttpPolicy

CONTROL_THREADS = 8             # handler threads beyond the requests a server holds (health, metrics, models)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
ADMISSION_POLICIES = ("unload", "offload")
MAX_SEQ = 256                   # llama.cpp's LLAMA_MAX_SEQ: sequences of one context
MAX_QUEUE = 4096
MAX_CTX = 1 << 24               # tokens of context per request: beyond any model's training


def port_number(value) -> int:
    port = int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ShimmyError(f"a TCP port is 0..65535, got {value!r}")
    return port


def bounded(value, what: str, most: int, least: int = 1) -> int:
    """An integer in least..most, from an int or its decimal text."""
    n = int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value
    if isinstance(n, bool) or not isinstance(n, int) or not least <= n <= most:
        raise ShimmyError(f"{what} must be an integer from {least} to {most}, got {value!r}")
    return n


def ctx_value(value) -> int:
    """A request's context, from `--ctx` or a model's `ctx` in --config: one bound for both."""
    return bounded(value, "ctx", MAX_CTX)


def parallel_value(value) -> int:
    """Sequences decoded together, from `--parallel` or a model's `parallel` in --config."""
    return bounded(value, "parallel", MAX_SEQ)


def names(value) -> tuple[str, ...]:
    """NAME[,NAME] (or a list) as a tuple."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(x.strip() for x in items if x.strip())


@dataclass
class ServeConfig:
    """What `serve` runs with; each default's reason is in defaults.py."""
    model_path: Path | None            # the model loaded at start; None: every discovered model, on demand
    host: str = opt(defaults.HOST, flags=("--host",), help="address to listen on")
    port: int = opt(defaults.PORT, flags=("--port",), parse=port_number, help="0 takes a free port")
    ctx: int = opt(defaults.N_CTX, flags=("--ctx",), parse=ctx_value,
                   help="context of each request (the KV cache holds ctx x parallel)")
    parallel: int = opt(defaults.PARALLEL, flags=("--parallel",), parse=parallel_value,
                        help=f"requests decoded together (at most {MAX_SEQ}, llama.cpp's LLAMA_MAX_SEQ)")
    queue: int = opt(defaults.QUEUE, flags=("--queue",), parse=lambda v: bounded(v, "queue", MAX_QUEUE, 0),
                     help=f"requests waiting beyond those (at most {MAX_QUEUE}: each holds a handler thread)")
    model: ModelOptions = opt(ModelOptions(), nested=True)   # every model's; a model's --config table over them
    main_plan: Plan | None = None      # the --model's plan, made at start (None: each worker plans its own)
    api_key: str | None = None
    max_body: int = defaults.MAX_BODY
    known_paths: tuple = ()            # other discovered files, listed by /api/models
    cors_origin: str | None = opt(None, flags=("--cors-origin",), metavar="ORIGIN",
                                  help="let browsers on ORIGIN (or *) read answers; default: no CORS headers")
    allowed_hosts: tuple = opt((), flags=("--allowed-hosts",), parse=names, metavar="NAME[,NAME]",
                               help="Host header names accepted beyond the bound address and loopback's")
    max_pending: int = defaults.MAX_PENDING_CONNECTIONS
    header_timeout: float = defaults.HEADER_TIMEOUT
    keep_alive: float = opt(defaults.KEEP_ALIVE_S, flags=("--keep-alive",),
                            parse=lambda v: parse_duration(v, "--keep-alive"), metavar="DURATION",
                            help="how long a model loaded on demand stays after its last request (5m; 0: unload "
                                 "after it; -1: keep)")
    watchdog: float = opt(defaults.WATCHDOG_S, flags=("--watchdog",), parse=lambda v: parse_duration(v, "--watchdog"),
                          metavar="DURATION", help="a model worker with requests in flight and no progress this long "
                          "is reported in /health and its requests fail (killed and restarted after as long again); "
                          "0: off")
    settings: dict = field(default_factory=dict)   # per model name: models_config.ModelSettings (--config)
    memory_budget: dict | None = None              # device -> bytes resident models may hold; None: no check
    cache_ram: int = opt(defaults.CACHE_RAM, flags=("--cache-ram",), parse=parse_size, metavar="SIZE",
                         help="host RAM per model for conversations saved from their slot (0: off); within "
                              "the host budget, it yields to models")
    max_models: int = opt(defaults.MAX_MODELS, flags=("--max-models",),
                          parse=lambda v: positive_int(v, "max-models"), help="models resident at once")
    admit_wait: float = opt(defaults.ADMIT_WAIT_S, flags=("--admit-wait",),
                            parse=lambda v: parse_duration(v, "--admit-wait"), metavar="DURATION",
                            help="how long a request for a model that cannot load now waits for a busy one to go "
                                 "idle and make room (0: 503 with Retry-After at once)")
    admission: str = opt(defaults.ADMISSION, flags=("--admission",), choices=ADMISSION_POLICIES,
                         help="a model that does not fit beside the resident ones: unload idle models first, "
                              "or re-plan it more offloaded (fit) first")

    def sized(self, options: ModelOptions, ctx: int | None = None, parallel: int | None = None) -> ModelOptions:
        """`options` with the context a worker holds: ctx per request, times parallel."""
        ctx, parallel = ctx or self.ctx, parallel or self.parallel
        return replace(options, n_ctx=ctx * parallel, n_seq_max=parallel)

    def handler_threads(self) -> int:
        """Each running or queued request holds a handler thread; a few more
        answer health, metrics and model lists meanwhile."""
        return self.parallel + self.queue + CONTROL_THREADS

    def stream_threads(self) -> int:
        """Each generation the resident models hold may be a stream, which
        holds a thread from its first piece to its end."""
        return self.max_models * (self.parallel + self.queue)

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
