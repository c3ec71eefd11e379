"""`shimmy-py serve`: from the command line's flags to a running server
(discovery, the ServeConfig read back from its flags, the --model's plan,
per-model settings, memory budget, API key), until Ctrl-C or SIGTERM."""
from __future__ import annotations

import os
import signal
import sys

from .errors import ShimmyError


def serve(args) -> int:
    import logging

    from .fields import from_flags
    from .placement.machine import make_plan
    from .placement.plan import to_text
    from .serving.config import ServeConfig
    from .serving.models import settings as models_config
    from .serving.models.discovery import discover
    from .serving.models.names import resolve_model
    from .serving.server import Server
    logging.basicConfig(format="shimmy-py: %(message)s")
    logging.getLogger("shimmy_py.server").setLevel(logging.INFO)   # requests, loads and unloads, with reasons
    found = discover(args.model_dirs)
    if args.model is None and not found:
        raise ShimmyError("no GGUF models found: give --model or --model-dirs (see `shimmy-py list`)")
    path = resolve_model(args.model, args.model_dirs) if args.model is not None else None
    config = from_flags(ServeConfig, args, model_path=path, api_key=api_key(args),
                        known_paths=tuple(found))
    if path is not None:                      # the --model's plan, printed now; others plan in their worker
        config.main_plan = make_plan(path, config.sized(config.model).placement)
    config.memory_budget = memory_budget(args, config)
    if args.config:
        config.settings = models_config.load(args.config, config.model)
    server = Server(config)
    if not config.loopback and not config.api_key:
        print(f"shimmy-py: warning: listening on {config.host} without an API key: anyone who can reach "
              "this port can use the model (set SHIMMY_API_KEY or --api-key-file)", file=sys.stderr, flush=True)
    if config.main_plan is not None:
        print(f"shimmy-py: serving {path} as {', '.join(server.state.catalog.names)} on {server.url}", flush=True)
        print(to_text(config.main_plan).split("per layer")[0].rstrip(), flush=True)
    else:
        print(f"shimmy-py: serving {len(set(server.state.catalog.values()))} discovered models on demand "
              f"(at most {config.max_models} resident) on {server.url}", flush=True)
    stop = StopSignal()
    server.start()
    print(f"shimmy-py: ready on {server.url} (parallel {config.parallel}, context {config.ctx} per request)",
          flush=True)
    try:
        stop.wait()
    finally:
        print("shimmy-py: stopping", flush=True)
        server.stop()
    return 0


class StopSignal:
    """SIGTERM or SIGINT, waited for in the main thread. The kernel hands a
    process's signal to any of its threads that does not block it, and Python
    runs the handler in the main thread only when that thread next runs Python:
    a main thread asleep on a lock (an Event's wait) is not woken by a signal
    another thread took, and the server went on serving after a SIGTERM
    (tests/unit/test_stop_signal.py). The C handler writes the signal's number
    to the wakeup descriptor whichever thread takes it, and the main thread
    sleeps on a read of that descriptor instead."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        self._numbers = frozenset(int(s) for s in signals)
        for s in signals:
            signal.signal(s, lambda *_: None)   # caught (its byte written), no more
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def wait(self) -> int:
        """Blocks until one of the signals arrives; returns its number."""
        while True:
            for number in os.read(self._read, 64):
                if number in self._numbers:
                    return number


def memory_budget(args, config) -> dict:
    """What resident models may hold per device: the free memory at start, less
    a margin (as fit leaves), unless --memory-budget NAME=SIZE says otherwise."""
    from .placement.devices import device_specs
    from .placement.options import parse_capacities
    from .placement.planner import margin_for
    placement = config.model.placement
    budget = {d.name: d.capacity_bytes - margin_for(d.capacity_bytes)
              for d in device_specs(placement.rpc)}
    budget.update(parse_capacities(args.memory_budget))
    return budget


def api_key(args) -> str | None:
    """--api-key-file (first line), else SHIMMY_API_KEY, else --api-key (visible in `ps`)."""
    if args.api_key_file:
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                key = f.readline().strip()
        except OSError as e:
            raise ShimmyError(f"--api-key-file {args.api_key_file}: {e.strerror or e}") from None
        if not key:
            raise ShimmyError(f"--api-key-file {args.api_key_file}: the first line is empty")
        return key
    return os.environ.get("SHIMMY_API_KEY") or args.api_key
