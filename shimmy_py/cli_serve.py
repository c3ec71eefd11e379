"""`shimmy-py serve`: from the command line's flags to a running server
(discovery, the --model's plan, per-model settings, memory budget, API key),
until Ctrl-C or SIGTERM."""
from __future__ import annotations

import sys

from .cli_args import model_dirs, placement_options
from .errors import ShimmyError


def serve(args) -> int:
    import logging
    import signal
    import threading
    from dataclasses import replace

    from .placement.make import make_plan
    from .placement.options import parse_size
    from .placement.plan import to_text
    from .serving import models_config
    from .serving.api import ApiError, parse_duration
    from .serving.discovery import discover
    from .serving.names import resolve_model
    from .serving.server import ServeConfig, Server
    logging.basicConfig(format="shimmy-py: %(message)s")
    logging.getLogger("shimmy_py.server").setLevel(logging.INFO)   # requests, loads and unloads, with reasons
    dirs = model_dirs(args)
    found = discover(dirs)
    opts = replace(placement_options(args), n_ctx=args.ctx * args.parallel, n_seq=args.parallel)
    if args.model is None:
        if not found:
            raise ShimmyError("no GGUF models found: give --model or --model-dirs (see `shimmy-py list`)")
        path = plan = None                    # every discovered model, loaded on demand
    else:
        path = resolve_model(args.model, dirs)
        plan = make_plan(path, opts)
    kwargs = {"rpc": opts.rpc, "kv_type": args.kv_type, "flash_attn": args.flash_attn, "cpu_moe": opts.cpu_moe,
              "n_cpu_moe": opts.n_cpu_moe, "fit": opts.fit, "vram_budget": opts.vram_budget,
              "overrides": opts.overrides}
    if plan is not None:
        kwargs = {"placement": plan, "rpc": opts.rpc, "kv_type": args.kv_type, "flash_attn": args.flash_attn}
    config = ServeConfig(path, args.host, args.port, args.ctx, args.threads, args.parallel, args.queue,
                         api_key(args), model_kwargs=kwargs, known_paths=tuple(f.path for f in found),
                         cors_origin=args.cors_origin,
                         allowed_hosts=tuple(h for h in args.allowed_hosts.split(",") if h),
                         keep_alive=parse_duration(args.keep_alive, "--keep-alive"), max_models=args.max_models,
                         cache_ram=parse_size(args.cache_ram), admission=args.admission,
                         settings=models_config.load(args.config) if args.config else {},
                         memory_budget=memory_budget(args, opts))
    try:
        server = Server(config)
    except ApiError as e:
        raise ShimmyError(e.message) from None
    if not config.loopback and not config.api_key:
        print(f"shimmy-py: warning: listening on {config.host} without an API key: anyone who can reach "
              "this port can use the model (set SHIMMY_API_KEY or --api-key-file)", file=sys.stderr, flush=True)
    if plan is not None:
        print(f"shimmy-py: serving {path} as {', '.join(server.state.names)} on {server.url}", flush=True)
        print(to_text(plan).split("per layer")[0].rstrip(), flush=True)
    else:
        print(f"shimmy-py: serving {len(set(server.state.catalog.values()))} discovered models on demand "
              f"(at most {args.max_models} resident) on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"shimmy-py: ready on {server.url} (parallel {args.parallel}, context {args.ctx} per request)",
          flush=True)
    try:
        stop.wait()
    finally:
        print("shimmy-py: stopping", flush=True)
        server.stop()
    return 0


def memory_budget(args, opts) -> dict:
    """What resident models may hold per device: the free memory at start, less
    a margin (as fit leaves), unless --memory-budget NAME=SIZE says otherwise."""
    from .placement.devices import device_specs
    from .placement.options import parse_capacities
    from .placement.planner import margin_for
    budget = {d.name: d.capacity_bytes - margin_for(d.capacity_bytes) for d in device_specs(opts.rpc)}
    budget.update(parse_capacities(args.memory_budget))
    return budget


def api_key(args) -> str | None:
    """--api-key-file (first line), else SHIMMY_API_KEY, else --api-key (visible in `ps`)."""
    import os
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
