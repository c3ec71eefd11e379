"""`shimmy-py calibrate` and `plan --predict`: the machine's measured rates,
and each strategy's predicted speed in the memory this machine has."""
from __future__ import annotations

import json
from dataclasses import replace

from .errors import PlacementError
from .fields import int_at_least


def add_calibrate(sub) -> None:
    c = sub.add_parser("calibrate", help="measure RAM and file read rates and per-layer costs; save a machine "
                                         "profile that plan --predict, bench and serve read")
    c.add_argument("--file", default=None, metavar="GGUF",
                   help="the file whose reads are measured (default: a 1 GiB scratch file in the cache folder)")
    c.add_argument("-t", "--threads", type=int_at_least(1), default=None,
                   help="threads the models will use (default: the physical cores)")
    c.add_argument("--json", action="store_true", help="print the profile as JSON")
    c.set_defaults(func=_calibrate)


def _calibrate(args) -> int:
    import psutil

    from .calibrate import calibrate
    threads = args.threads or psutil.cpu_count(logical=False) or 1
    profile = calibrate(args.file, threads, out=(lambda _: None) if args.json else print)
    if args.json:
        print(json.dumps(profile, indent=1))
    return 0


def require_profile() -> dict:
    from .placement.profile import load_profile, profile_path
    profile = load_profile()
    if profile is None:
        raise PlacementError(f"no machine profile at {profile_path()}: run `shimmy-py calibrate` first")
    return profile


def predictions(path: str, options, held=None) -> list[tuple[str, object, object]]:
    """(label, plan, Prediction) for the options as given, then each other strategy
    this machine can run (with the same RAM budget and profile)."""
    from .gguf_io.tensors import read_table
    from .placement.machine import make_plan
    from .placement.options import Strategy
    from .placement.predict import predict
    profile, table = require_profile(), read_table(path)
    rows, seen = [], set()
    asked = str(options.placement.strategy)
    for spec in [asked, "gpu", "cpu-moe", "fit"]:
        if spec in seen:
            continue
        seen.add(spec)
        try:
            plan = make_plan(path, replace(options.placement, strategy=Strategy.parse(spec)), held=held)
        except PlacementError as e:
            rows.append((spec, None, str(e)))
            continue
        if not plan.accelerators and spec != asked:
            continue                          # without an accelerator the strategies are one plan
        rows.append((spec, plan, predict(plan, table, profile, options.n_threads)))
    return rows


def prediction_table(rows) -> str:
    lines = [f"{'strategy':<16} {'host RAM':>9} {'page cache':>11} {'streamed':>9} {'file/token':>11} "
             f"{'decode tok/s':>13} {'prefill tok/s':>14}"]
    for spec, plan, p in rows:
        if plan is None:
            lines.append(f"{spec:<16} cannot be planned: {p}")
            continue
        t = plan.tiers
        host = t.resident_bytes if t else plan.device("CPU").weights_bytes
        cache, streamed = (t.cache_bytes, t.streamed_bytes) if t else (0, 0)
        over = [d.name for d in plan.devices if d.kind != "cpu" and d.total_bytes > d.capacity_bytes > 0]
        notes = ([f"over {', '.join(over)}'s capacity"] if over else []) + (["host part only"] if p.host_only else [])
        lines.append(f"{spec:<16} {host / 2**30:>8.2f}G {cache / 2**30:>10.2f}G {streamed / 2**30:>8.2f}G "
                     f"{p.file_bytes / 2**20:>9.1f}M {p.decode_tps:>13.2f} {p.prefill_tps:>14.1f}"
                     + (f"  ({'; '.join(notes)})" if notes else ""))
    return "\n".join(lines)
