"""`shimmy-py trace`: which experts a model routes prompts to. Runs each
prompt (greedy unless told otherwise) with the routing traced, prints the
per-layer summary (or JSON), and writes the arrays (.npz, a profile that
ExpertTrace.load reads back) and the pictures."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import defaults
from .errors import ShimmyError
from .fields import add_flags, from_flags

MODEL_SKIPS = {"target_vram"}


def _prompts(args) -> list[str]:
    if args.prompt is not None:
        return [args.prompt]
    try:
        lines = Path(args.file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ShimmyError(f"cannot read the prompts file {args.file}: {e}") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise ShimmyError(f"{args.file} has no prompt (one per line)")
    return prompts


def report(trace) -> dict:
    """The figures of a trace as JSON values."""
    caps, curve = trace.lru_curve()
    balance = trace.load_balance()
    return {"tokens": len(trace.ids), "prompts": len(trace.starts), "layers": list(trace.layers),
            "n_experts": trace.n_experts, "k": trace.k, "truncated": trace.truncated,
            "counts": trace.counts().tolist(), "max_over_mean": balance["max_over_mean"].round(4).tolist(),
            "entropy": balance["entropy"].round(4).tolist(),
            "adjacent_overlap": trace.adjacent_overlap().round(4).tolist(),
            "lru": {"capacities": caps.tolist(), "hit_rate": curve.round(4).tolist()}}


def trace_command(args) -> int:
    from .generation.experts import ExpertTrace
    from .generation.model import Model
    from .generation.options import ModelOptions
    from .generation.sampling import SamplingParams
    prompts = _prompts(args)
    sampling = from_flags(SamplingParams, args)
    with Model(args.model, from_flags(ModelOptions, args), verbose=args.verbose) as model:
        traces = [model.generate(p, max_tokens=args.n, sampling=sampling, trace_experts=True).experts
                  for p in prompts]
    trace = ExpertTrace.merge(traces) if len(traces) > 1 else traces[0]
    if args.out:
        trace.save(args.out)
    if args.plot:
        plot = Path(args.plot)
        trace.heatmap(plot)
        trace.strip(plot.with_name(plot.stem + ".strip.png"))
    if args.json:
        print(json.dumps(report(trace)))
    else:
        print(trace.summary())
        written = [str(p) for p in (args.out, args.plot) if p]
        if written:
            print(f"wrote {', '.join(written)}", file=sys.stderr)
    return 0


def add_trace(sub) -> None:
    from .generation.options import ModelOptions
    from .generation.sampling import SamplingParams
    from .generation.spec_modes import FIELDS as SPECULATIVE_FIELDS
    t = sub.add_parser("trace", help="which routed experts a model chooses for prompts (arrays, summary, pictures)")
    t.add_argument("model", help="path of a GGUF file")
    what = t.add_mutually_exclusive_group(required=True)
    what.add_argument("-p", "--prompt", help="one prompt")
    what.add_argument("--file", help="a file of prompts, one per line: their traces make one profile")
    t.add_argument("-n", type=int, default=defaults.MAX_TOKENS, help="tokens to generate per prompt")
    t.add_argument("--out", help="write the arrays (.npz: ids, weights, tokens, counts)")
    t.add_argument("--plot", help="write a layer x expert heatmap PNG here, and PLOT.strip.png beside it")
    t.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    add_flags(t, SamplingParams)
    add_flags(t, ModelOptions, skip=MODEL_SKIPS | SPECULATIVE_FIELDS)   # a trace decodes plainly
    t.set_defaults(func=trace_command, temperature=0.0)
