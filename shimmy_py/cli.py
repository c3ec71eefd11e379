"""The `shimmy-py` command line (also `python -m shimmy_py`)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from . import defaults
from .errors import ShimmyError
from .fields import add_flags, from_flags, int_at_least
from .sizes import gib

# the flags of each command that come from the options records (fields.py): the rest is the command's own
PLAN_SKIPS = {"kv_type", "load_mode"}      # --threads: the threads --predict predicts for
MODEL_SKIPS = {"target_vram"}


def _plan(args) -> int:
    from .generation.options import ModelOptions
    from .placement.machine import make_plan
    from .placement.plan import to_json, to_text
    options = from_flags(ModelOptions, args)
    if args.n_threads is not None and not args.predict:
        raise ShimmyError("plan --threads is the thread count --predict predicts for: add --predict")
    draft = make_plan(options.speculative.draft_model, options.for_draft().placement) \
        if options.speculative.draft_model else None
    held = draft.accelerator_bytes() if draft else None
    plan = make_plan(args.model, options.placement, held=held)
    proposals, proposed = _proposals(args.model, options, plan, held)
    if args.predict:
        from .cli_calibrate import prediction_table, predictions
        rows = predictions(args.model, options, held) + [(p.retyping.short(), p.plan, p.prediction)
                                                         for p in proposals]
        if args.json:
            print(json.dumps([{"strategy": s, "error": p} if plan_ is None else
                              {"strategy": s, **{k: v for k, v in asdict(p).items()}} for s, plan_, p in rows],
                             indent=1))
        else:
            print(prediction_table(rows) + "".join(f"\n{p.retyping.label()}, lossy: {p.command(args.model)}"
                                                  for p in proposals))
        return 0
    if args.json:
        from .placement.proposals import to_json as proposals_json
        print(json.dumps({**to_json(plan), **({"draft": to_json(draft)} if draft else {}),
                          **({"proposals": proposals_json(proposals)} if plan.tiers else {})}, indent=1))
    else:
        print(to_text(plan) + (f"\n\ndraft model (its accelerator bytes are left out of the plan above):\n"
                               f"{to_text(draft)}" if draft else "")
              + "".join(f"\n{line}" for line in proposed))
    return 0


def _proposals(model: str, options, plan, held) -> tuple[list, list[str]]:
    """When `plan` streams, the smaller files that would run faster
    (placement/proposals.py), and the lines `plan` prints for them."""
    if plan.tiers is None:
        return [], []
    from dataclasses import replace

    from .gguf_io.tensors import read_table
    from .placement.machine import make_plan
    from .placement.predict import predict
    from .placement.profile import load_profile
    from .placement.proposals import lines, propose
    profile, table = load_profile(), read_table(model)
    current = predict(plan, table, profile, options.n_threads) if profile else None
    quick = replace(options.placement, measure_reserve=False)
    found = propose(table, lambda t: make_plan(t, quick, held=held), plan, profile, options.n_threads, current)
    return found, lines(found, model, current, typed="decode_type_bps" in (profile or {}))


def _devices(args) -> int:
    from .placement.devices import format_report, report
    from .placement.options import PlacementOptions
    r = report(from_flags(PlacementOptions, args).rpc)
    print(json.dumps(r, indent=1) if args.json else format_report(r))
    return 0


def _write_piece(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _generate(args) -> int:
    from .generation.loop import drain
    from .generation.model import Model
    from .generation.options import ModelOptions
    from .generation.sampling import SamplingParams
    with Model(args.model, from_flags(ModelOptions, args), verbose=args.verbose) as model:
        stream = model.stream(args.prompt, max_tokens=args.n, stop=args.stop,
                              sampling=from_flags(SamplingParams, args))
        result = drain(stream, None if args.json else _write_piece)
        streamed = model.streamer.stats.as_dict() if model.streamer is not None else None
    if args.json:
        print(json.dumps({**asdict(result), "streamed": streamed}, ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        tps = f"{result.tokens_per_s:.1f} tok/s" if result.tokens_per_s else "n/a tok/s"
        drafts = f", drafts kept {result.draft_accepted}/{result.drafted}" if result.drafted else ""
        if streamed:
            drafts += (f", experts streamed: {streamed['file_bytes_per_token'] / 2**20:.1f} MiB a token from the "
                       f"file, {streamed['miss_rate']:.0%} of routed slices missed")
        print(f"[{result.prompt_tokens} prompt + {result.completion_tokens} generated tokens, "
              f"finish: {result.finish_reason}, TTFT {result.ttft_s * 1000:.0f} ms, {tps}{drafts}]", file=sys.stderr)
    return 0


def serve_command(args) -> int:
    from .cli_serve import serve
    return serve(args)


def _list(args) -> int:
    from .serving.models.discovery import describe, discover
    from .serving.models.names import short_name
    rows = []
    for found in discover(args.model_dirs):
        try:
            d = describe(found)
            what = {"architecture": d.architecture, "params": d.params, "active_params": d.active_params,
                    "quantization": d.quantization}
        except ShimmyError as e:
            what = {"error": str(e)}
        rows.append({"name": found.name, "short_name": short_name(found.name), "source": found.source,
                     "path": str(found.path), "size_bytes": found.size_bytes, "parts": found.parts, **what})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no GGUF models found (--model-dirs, SHIMMY_BASE_GGUF, SHIMMY_MODEL_PATHS, ./models, "
              "the Hugging Face cache, Ollama's store)")
    for r in rows:
        what = (f"{r['architecture']:<10} {r['params'] / 1e9:7.2f}B ({r['active_params'] / 1e9:.2f}B active) "
                f"{r['quantization']:<6}") if "error" not in r else f"unreadable: {r['error']}"
        print(f"{r['name']:<32} {r['source']:<18} {gib(r['size_bytes'], 8)}  {what}")
    return 0


def _bench(args) -> int:
    from .bench import markdown, run_bench, to_json
    from .generation.options import ModelOptions
    options = from_flags(ModelOptions, args)
    results = run_bench(args.model, [p for p in args.placements.split(",") if p], args.p, args.n, args.r,
                        options.n_threads, options.placement.rpc, options.speculative, options.load_mode,
                        options.placement, args.feed)
    print(to_json(results) if args.json else markdown(results))
    return 0


def _add_generate(sub) -> None:
    from .generation.options import ModelOptions
    from .generation.sampling import SamplingParams
    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("model", help="path of a GGUF file")
    g.add_argument("-p", "--prompt", required=True)
    g.add_argument("-n", type=int_at_least(1), default=defaults.MAX_TOKENS,
                   help="most tokens to generate (default %(default)s)")
    g.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_flags(g, SamplingParams)
    add_flags(g, ModelOptions, skip=MODEL_SKIPS)
    g.set_defaults(func=_generate)


def _add_plan_and_devices(sub) -> None:
    from .generation.options import ModelOptions
    from .generation.spec_modes import FIELDS as SPECULATIVE_FIELDS
    from .placement.options import PlacementOptions
    pl = sub.add_parser("plan", help="show where every weight of a model would live")
    pl.add_argument("model", help="path of a GGUF file (a shape-only file is enough)")
    add_flags(pl, ModelOptions, skip=PLAN_SKIPS | (SPECULATIVE_FIELDS - {"draft_model"}))
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--predict", action="store_true",
                    help="predict decode and prefill speed of each strategy from the machine profile (calibrate)")
    pl.set_defaults(func=_plan)
    d = sub.add_parser("devices", help="list ggml devices, NVIDIA memory and host RAM")
    add_flags(d, PlacementOptions, only={"rpc"})
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_devices)


def _add_serve_and_list(sub) -> None:
    from .serving.config import ServeConfig
    sv = sub.add_parser("serve", help="serve shimmy's, OpenAI's, Ollama's and Anthropic's HTTP APIs")
    sv.add_argument("--model", "--model-path", dest="model", help="GGUF path, or a name found in --model-dirs")
    sv.add_argument("--model-dirs", default="", help='folders to discover GGUF files in, "DIR;DIR" (recursive)')
    sv.add_argument("--config", default=None, metavar="FILE",
                    help="per-model settings, TOML or JSON ([models.NAME]: cpu_moe, n_cpu_moe, fit, ctx, ...)")
    sv.add_argument("--memory-budget", action="append", default=[], metavar="NAME=SIZE",
                    help="what resident models may hold on device NAME (default: its free memory at start, less "
                         "a margin)")
    sv.add_argument("--api-key", default=None,
                    help="require 'Authorization: Bearer KEY' (visible in ps: prefer SHIMMY_API_KEY or --api-key-file)")
    sv.add_argument("--api-key-file", default=None, metavar="FILE", help="read the API key from FILE's first line")
    add_flags(sv, ServeConfig, skip={"n_ctx", *MODEL_SKIPS})
    sv.set_defaults(func=serve_command)
    ls = sub.add_parser("list", help="list the GGUF models found (model folders, Hugging Face cache, Ollama)")
    ls.add_argument("--model-dirs", default="", help='folders searched first, recursively, "DIR;DIR"')
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)


def _add_bench_and_synth(sub) -> None:
    from .bench import FEEDS
    from .cli_synth import add_synth
    from .generation.options import ModelOptions
    from .generation.spec_modes import FIELDS as SPECULATIVE_FIELDS
    b = sub.add_parser("bench", help="load time, TTFT, prompt and decode speed per placement")
    b.add_argument("model")
    b.add_argument("--placements", default="gpu", help="comma-separated: gpu,cpu-moe,n-cpu-moe=8,fit[=SIZE]")
    b.add_argument("-p", type=int_at_least(1), default=512, help="prompt tokens (default %(default)s, as llama-bench)")
    b.add_argument("-n", type=int_at_least(1), default=128,
                   help="generated tokens (default %(default)s, as llama-bench)")
    b.add_argument("-r", type=int_at_least(1), default=3, help="repetitions (default %(default)s)")
    add_flags(b, ModelOptions, only={"n_threads", "rpc", "load_mode", "ram_budget", "expert_profile", "stream_method",
                                     *SPECULATIVE_FIELDS})
    b.add_argument("--feed", choices=FEEDS, default="sampled",
                   help="what follows each decoded token: the sampled one (default) or a random one, as llama-bench "
                        "feeds (an MoE model's routing, so the experts a token reads, follows its input)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)
    add_synth(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shimmy-py", description="Run MoE GGUF models over llama.cpp.")
    p.add_argument("-v", "--verbose", action="store_true", help="show llama.cpp's log")
    sub = p.add_subparsers(dest="command", required=True)
    from .cli_calibrate import add_calibrate
    from .cli_perplexity import add_perplexity
    from .cli_quantize import add_quantize
    from .cli_trace import add_trace
    for add in (_add_generate, _add_plan_and_devices, _add_serve_and_list, _add_bench_and_synth, add_trace,
                add_perplexity, add_calibrate, add_quantize):
        add(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        from .native.log import verbose
        verbose()
    try:
        return args.func(args)
    except ShimmyError as e:
        print(f"shimmy-py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:   # a file that cannot be written or read (synth /proc/x.gguf ...)
        where = f" {e.filename}" if e.filename else ""
        print(f"shimmy-py: error:{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
