"""`shimmy-py quantize MODEL OUT --type T [--experts-only] [--layers L]`:
the file `plan` proposes when a model streams from the file (shimmy_py/quantize.py),
then what it costs: greedy agreement and perplexity against MODEL."""
from __future__ import annotations

import json
from dataclasses import asdict, fields

from .errors import ShimmyError
from .fields import add_flags, from_flags
from .sizes import readable


def _quantize(args) -> int:
    from .generation.options import ModelOptions
    from .placement.machine import make_plan
    from .placement.plan import CPU
    from .placement.retype import Retyping, parse_layers
    from .quantize import compare, default_text, quantize_file
    options = from_flags(ModelOptions, args)
    if args.layers and not args.experts_only:
        raise ShimmyError("--layers chooses the layers whose routed experts change type: add --experts-only")
    layers = parse_layers(args.layers) if args.layers else None
    retyping = Retyping(args.type, experts_only=args.experts_only, layers=layers)
    plan = make_plan(args.model, options.placement)
    on_acc = frozenset(p.name for p in plan.tensors if p.device != CPU)
    text = default_text() if args.text is None else (args.text, _read(args.text))
    done = quantize_file(args.model, args.out, retyping, on_acc, options.n_threads)
    result = {"path": str(done.path), "bytes_before": done.bytes_before, "bytes_after": done.bytes_after,
              "retyped_tensors": done.retyped, "retyping": retyping.label()}
    lines = [f"wrote {done.path}: {readable(done.bytes_after)} (was {readable(done.bytes_before)}); "
             f"{done.retyped} tensors changed type: {retyping.label()}; the rest as they were"]
    if not args.no_compare:
        cmp = compare(args.model, done.path, options.placement, text, options.n_threads)
        result["comparison"] = asdict(cmp)
        lines += ["lossy, measured:", *(f"  {line}" for line in cmp.lines())]
    print(json.dumps(result, indent=1) if args.json else "\n".join(lines))
    return 0


def _read(path: str) -> str:
    try:
        return open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise ShimmyError(f"--text {path}: cannot read it ({e})") from None


def add_quantize(sub) -> None:
    from .generation.options import ModelOptions
    from .placement.options import PlacementOptions
    from .placement.retype import TYPES
    q = sub.add_parser("quantize", help="a smaller file (routed experts at another type) by llama-quantize, "
                                        "and what it costs in greedy agreement and perplexity")
    q.add_argument("model", help="path of a GGUF file (F16, BF16 or F32 weights)")
    q.add_argument("out", help="the file to write (never overwritten)")
    q.add_argument("--type", required=True, type=str.upper, choices=list(TYPES),
                   help="the type the chosen tensors get")
    q.add_argument("--experts-only", action="store_true",
                   help="only the routed experts change type (default: every weight the plan keeps in host RAM; "
                        "what it puts on an accelerator is always kept as it is)")
    q.add_argument("--layers", default=None, metavar="L",
                   help="only these layers' routed experts (like 1-13 or 2,5,7-9; with --experts-only)")
    q.add_argument("--text", default=None, metavar="FILE",
                   help="the text greedy agreement and perplexity are measured on (default: the start of Python's "
                        "heapq.py)")
    q.add_argument("--no-compare", action="store_true", help="write the file only, without measuring it")
    q.add_argument("--json", action="store_true")
    placing = {f.name for f in fields(PlacementOptions)} - {"target_vram", "n_seq", "mtp"}
    add_flags(q, ModelOptions, only=placing | {"n_ctx", "n_threads"})
    q.set_defaults(func=_quantize)
