"""The `shimmy-py` command line (also `python -m shimmy_py`)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from . import defaults
from .cli_args import model_dirs, placement_options, rpc_list
from .errors import ShimmyError
from .generation.sampling import SamplingParams

_S = SamplingParams  # its field defaults are the sampling defaults


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    parse.__name__ = f"integer >= {lo}"
    return parse


def _threads(text: str) -> int:
    value = _int_at_least(1)(text)
    if value > defaults.MAX_THREADS:
        raise argparse.ArgumentTypeError(f"at most {defaults.MAX_THREADS} (ggml's limit; this machine has "
                                         f"{defaults.threads()} cores), got {value}")
    return value


def _port(text: str) -> int:
    value = _int_at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535, got {value}")
    return value


def add_placement_args(p: argparse.ArgumentParser) -> None:
    """The placement flags shared by plan, generate and serve."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cpu-moe", action="store_true", help="all routed experts in CPU RAM")
    g.add_argument("--n-cpu-moe", type=_int_at_least(0), metavar="N", help="routed experts of layers 0..N-1 in CPU RAM")
    g.add_argument("--fit", action="store_true", help="keep as many experts on the accelerator as fit")
    p.add_argument("--vram-budget", metavar="SIZE",
                   help="budget for --fit, e.g. 8GiB (default: free memory less a margin)")
    p.add_argument("--measure-reserve", action="store_const", const=True, default=None,
                   help="measure the compute reserve by a dry run of llama.cpp instead of estimating it "
                        "(default: under --fit, for architectures whose estimate is unchecked)")
    p.add_argument("-ot", "--override-tensor", action="append", default=[], metavar="PATTERN=BUFFER_TYPE",
                   help="llama.cpp tensor override, comma-separated, first match wins (repeatable)")
    p.add_argument("--rpc", default="", metavar="HOST:PORT[,HOST:PORT]", help="llama.cpp RPC servers to use")
    p.add_argument("--host-ram", default="", metavar="HOST:PORT[,HOST:PORT]",
                   help="RPC servers serving their host's RAM: routed experts spill there by capacity")
    p.add_argument("--device-capacity", action="append", default=[], metavar="NAME=SIZE",
                   help="plan device NAME (CPU, CUDA0, RPC1, ...) for SIZE instead of its free memory (repeatable)")
    p.add_argument("--ctx", type=_int_at_least(1), default=defaults.N_CTX, help="context length (default %(default)s)")


def add_context_args(p: argparse.ArgumentParser) -> None:
    """The context flags of generate and serve (llama.cpp's -ctk/-ctv and -fa)."""
    from .native.context_handle import FLASH_ATTN, KV_TYPES
    p.add_argument("--kv-type", choices=sorted(KV_TYPES), default=defaults.KV_TYPE,
                   help="KV cache type (default %(default)s)")
    p.add_argument("-fa", "--flash-attn", choices=sorted(FLASH_ATTN), default=defaults.FLASH_ATTN,
                   help="flash attention (default %(default)s)")


def _plan(args) -> int:
    from .placement.make import make_plan
    from .placement.plan import to_json, to_text
    plan = make_plan(args.model, placement_options(args, args.target_vram))
    print(json.dumps(to_json(plan), indent=1) if args.json else to_text(plan))
    return 0


def _devices(args) -> int:
    from .placement.devices import format_report, report
    r = report(rpc_list(args))
    print(json.dumps(r, indent=1) if args.json else format_report(r))
    return 0


def _write_piece(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _generate(args) -> int:
    from .generation.loop import drain
    from .generation.model import Model
    from .placement.make import make_plan
    opts = placement_options(args)
    with Model(args.model, n_ctx=args.ctx, n_threads=args.threads, verbose=args.verbose,
               placement=make_plan(args.model, opts), rpc=opts.rpc, kv_type=args.kv_type,
               flash_attn=args.flash_attn) as model:
        stream = model.stream(args.prompt, max_tokens=args.n, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                              repeat_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop)
        result = drain(stream, None if args.json else _write_piece)
    if args.json:
        print(json.dumps(asdict(result), ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        tps = f"{result.tokens_per_s:.1f} tok/s" if result.tokens_per_s else "n/a tok/s"
        print(f"[{result.prompt_tokens} prompt + {result.completion_tokens} generated tokens, "
              f"finish: {result.finish_reason}, TTFT {result.ttft_s * 1000:.0f} ms, {tps}]", file=sys.stderr)
    return 0


def _synth(args) -> int:
    from .synthetic import families, shapes, synth
    if args.arch:
        path = families.write(args.out, args.arch, seed=args.seed)
        what = f"family {args.arch}"
    elif args.preset in shapes.REAL:
        if not args.shape_only:
            raise ShimmyError(f"preset {args.preset} is a real model's size: only --shape-only (for planning)")
        quant = args.quant or shapes.DEFAULT_QUANT.get(args.preset, "Q4_K_M")
        path = shapes.write_real(args.out, args.preset, quant)
        what = f"preset {args.preset}, {quant} as llama-quantize types it"
    else:
        path = synth.write(args.out, args.preset, seed=args.seed, dtype=args.dtype, shape_only=args.shape_only,
                           vocab=args.vocab)
        what = f"preset {args.preset}"
    kind = "shape-only (sparse, not loadable)" if args.shape_only else "random weights: its text is gibberish"
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {what}; {kind})")
    return 0


def serve_command(args) -> int:
    from .cli_serve import serve
    return serve(args)


def _list(args) -> int:
    from .serving.discovery import describe, discover
    from .serving.names import short_name
    rows = []
    for found in discover(model_dirs(args)):
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
        print(f"{r['name']:<32} {r['source']:<18} {r['size_bytes'] / 2**30:8.2f} GiB  {what}")
    return 0


def _bench(args) -> int:
    from .bench import markdown, run_bench, to_json
    results = run_bench(args.model, [p for p in args.placements.split(",") if p], args.p, args.n, args.r,
                        args.threads, rpc_list(args))
    print(to_json(results) if args.json else markdown(results))
    return 0


def _add_generate(sub) -> None:
    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("model", help="path of a GGUF file")
    g.add_argument("-p", "--prompt", required=True)
    g.add_argument("-n", type=_int_at_least(1), default=defaults.MAX_TOKENS,
                   help="most tokens to generate (default %(default)s)")
    g.add_argument("--temperature", "--temp", type=float, default=_S.temperature,
                   help="0 is greedy (default %(default)s)")
    g.add_argument("--top-k", type=int, default=_S.top_k, help="default %(default)s")
    g.add_argument("--top-p", type=float, default=_S.top_p, help="default %(default)s")
    g.add_argument("--min-p", type=float, default=_S.min_p, help="default %(default)s")
    g.add_argument("--repeat-penalty", type=float, default=_S.repeat_penalty, help="default %(default)s")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    g.add_argument("--threads", type=_threads, default=None, help="default: the physical cores")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_placement_args(g)
    add_context_args(g)
    g.set_defaults(func=_generate)


def _add_plan_and_devices(sub) -> None:
    pl = sub.add_parser("plan", help="show where every weight of a model would live")
    pl.add_argument("model", help="path of a GGUF file (a shape-only file is enough)")
    add_placement_args(pl)
    pl.add_argument("--target-vram", metavar="SIZE", help="plan for a hypothetical accelerator of SIZE")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_plan)
    d = sub.add_parser("devices", help="list ggml devices, NVIDIA memory and host RAM")
    d.add_argument("--rpc", default="", metavar="HOST:PORT[,HOST:PORT]")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_devices)


def _add_serve_and_list(sub) -> None:
    sv = sub.add_parser("serve", help="serve shimmy's and OpenAI's HTTP API")
    sv.add_argument("--model", "--model-path", dest="model", help="GGUF path, or a name found in --model-dirs")
    sv.add_argument("--model-dirs", default="", help='folders to discover GGUF files in, "DIR;DIR" (recursive)')
    sv.add_argument("--keep-alive", default="5m",
                    help="how long a model loaded on demand stays after its last request (default 5m; 0: unload "
                         "after it; -1: keep)")
    sv.add_argument("--max-models", type=_int_at_least(1), default=defaults.MAX_MODELS,
                    help="models resident at once (default %(default)s)")
    sv.add_argument("--config", default=None, metavar="FILE",
                    help="per-model settings, TOML or JSON ([models.NAME]: cpu_moe, n_cpu_moe, fit, ctx, ...)")
    sv.add_argument("--memory-budget", action="append", default=[], metavar="NAME=SIZE",
                    help="what resident models may hold on device NAME (default: its free memory at start, less "
                         "a margin)")
    sv.add_argument("--cache-ram", default=f"{defaults.CACHE_RAM >> 20}MiB", metavar="SIZE",
                    help="host RAM per model for conversations saved from their slot (default %(default)s; 0: off); "
                         "within the host budget, it yields to models")
    sv.add_argument("--admission", choices=("unload", "offload"), default=defaults.ADMISSION,
                    help="a model that does not fit beside the resident ones: unload idle models first (default), "
                         "or re-plan it more offloaded (fit) first")
    sv.add_argument("--host", default=defaults.HOST, help="default %(default)s")
    sv.add_argument("--port", type=_port, default=defaults.PORT, help="default %(default)s; 0 takes a free port")
    sv.add_argument("--threads", type=_threads, default=None, help="default: the physical cores")
    sv.add_argument("--parallel", type=_int_at_least(1), default=defaults.PARALLEL,
                    help="requests decoded together (default %(default)s)")
    sv.add_argument("--queue", type=_int_at_least(0), default=defaults.QUEUE,
                    help="requests waiting beyond those (default %(default)s)")
    sv.add_argument("--api-key", default=None,
                    help="require 'Authorization: Bearer KEY' (visible in ps: prefer SHIMMY_API_KEY or --api-key-file)")
    sv.add_argument("--api-key-file", default=None, metavar="FILE", help="read the API key from FILE's first line")
    sv.add_argument("--cors-origin", default=None, metavar="ORIGIN",
                    help="let browsers on ORIGIN (or *) read answers; default: no CORS headers")
    sv.add_argument("--allowed-hosts", default="", metavar="NAME[,NAME]",
                    help="Host header names accepted beyond the bound address and loopback's")
    add_placement_args(sv)
    add_context_args(sv)
    sv.set_defaults(func=serve_command)
    ls = sub.add_parser("list", help="list the GGUF models found (model folders, Hugging Face cache, Ollama)")
    ls.add_argument("--model-dirs", default="", help='folders searched first, recursively, "DIR;DIR"')
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)


def _add_bench_and_synth(sub) -> None:
    from .synthetic.families import FAMILIES
    from .synthetic.quant_mix import FTYPES
    from .synthetic.shapes import REAL
    from .synthetic.synth import DTYPES, PRESETS
    b = sub.add_parser("bench", help="load time, TTFT, prompt and decode speed per placement")
    b.add_argument("model")
    b.add_argument("--placements", default="gpu", help="comma-separated: gpu,cpu-moe,n-cpu-moe=8,fit[=SIZE]")
    b.add_argument("-p", type=_int_at_least(1), default=512, help="prompt tokens (default %(default)s, as llama-bench)")
    b.add_argument("-n", type=_int_at_least(1), default=128,
                   help="generated tokens (default %(default)s, as llama-bench)")
    b.add_argument("-r", type=_int_at_least(1), default=3, help="repetitions (default %(default)s)")
    b.add_argument("--threads", type=_threads, default=None, help="default: the physical cores")
    b.add_argument("--rpc", default="", metavar="HOST:PORT[,HOST:PORT]")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)
    s = sub.add_parser("synth", help="write a synthetic DeepSeekMoE GGUF (random weights)")
    s.add_argument("out", help="output .gguf path")
    s.add_argument("--preset", choices=sorted([*PRESETS, *REAL]), default="tiny")
    s.add_argument("--quant", default=None, choices=["BF16", *FTYPES],
                   help="real-size presets: llama-quantize's type (default: as people download it, "
                        "MXFP4_MOE for gpt-oss, else Q4_K_M)")
    s.add_argument("--arch", choices=sorted(FAMILIES), default=None,
                   help="another MoE family instead of DeepSeekMoE (small shapes, the family's tokenizer)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: the preset's")
    s.add_argument("--shape-only", action="store_true", help="header and tensor table only (sparse file)")
    s.add_argument("--vocab", default=None, metavar="GGUF",
                   help="tokenizer GGUF to copy (default: llama.cpp's DeepSeek LLM vocabulary from the build)")
    s.set_defaults(func=_synth)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shimmy-py", description="Run MoE GGUF models over llama.cpp.")
    p.add_argument("-v", "--verbose", action="store_true", help="show llama.cpp's log")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_plan_and_devices, _add_serve_and_list, _add_bench_and_synth):
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
