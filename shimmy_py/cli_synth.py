"""`shimmy-py synth`: writes a synthetic model. One flag names the weight
type for every kind of model (`--quant`, also spelled `--dtype`): F32, F16,
BF16 and Q8_0 are written by the project's writer; llama-quantize's mixes
(Q4_K_M, MXFP4_MOE, ...) are made by the built `llama-quantize` from an F16
file (a shape-only file: typed by its `--dry-run`). A flag that does
not apply to what was asked is an error naming it (`inapplicable`, a pure
function of the arguments), never dropped."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .errors import ShimmyError
from .sizes import mib

WRITTEN = ("F32", "F16", "BF16", "Q8_0")        # the writer's own types (synth.DTYPES)


def quantizer_types() -> tuple[str, ...]:
    from .synthetic.quant_mix import FTYPES
    return tuple(t for t in FTYPES if t not in WRITTEN)


def _weight_type(text: str) -> str:
    value = text.upper()
    if value not in (*WRITTEN, *quantizer_types()):
        raise argparse.ArgumentTypeError(f"unknown weight type {text!r}; choose one of "
                                         f"{', '.join((*WRITTEN, *quantizer_types()))}")
    return value


def add_synth(sub) -> None:
    from .synthetic.behaviours import BEHAVIOURS
    from .synthetic.families import FAMILIES
    from .synthetic.shapes import REAL
    from .synthetic.synth import PRESETS
    s = sub.add_parser("synth", help="write a synthetic model (random weights, or weights set for a behaviour)")
    s.add_argument("out", help="output .gguf path")
    s.add_argument("--preset", choices=sorted([*PRESETS, *REAL]), default=None,
                   help="DeepSeekMoE's sizes (default tiny) or a real model's, shape-only")
    s.add_argument("--quant", "--dtype", dest="quant", type=_weight_type, default=None, metavar="TYPE",
                   help=f"the weights' type: {', '.join(WRITTEN)} (written directly) or a llama-quantize "
                        "mix (Q4_K_M, Q5_K_M, Q6_K, Q4_K_S, MXFP4_MOE). Default: the preset's (tiny F32, "
                        "the others F16); a real-size preset as people download it (MXFP4_MOE for gpt-oss, "
                        "else Q4_K_M)")
    s.add_argument("--arch", choices=sorted(FAMILIES), default=None,
                   help="another MoE family instead of DeepSeekMoE (small shapes, the family's tokenizer)")
    s.add_argument("--behaviour", choices=sorted(BEHAVIOURS), default=None,
                   help="a model that does something on purpose (tool-caller: a Qwen3-MoE that thinks, calls "
                        "the offered tool, then answers; looper: greedy output that repeats a 24-token loop, of "
                        "--arch's family, --preset's shape and --quant)")
    s.add_argument("--seed", type=int, default=None, help="random weights' seed (default 0)")
    s.add_argument("--shape-only", action="store_true", help="header and tensor table only (sparse file)")
    s.add_argument("--vocab", default=None, metavar="GGUF",
                   help="tokenizer GGUF to copy (default: llama.cpp's DeepSeek LLM vocabulary from the build)")
    s.set_defaults(func=synth_command)


def inapplicable(args) -> str | None:
    """Why a given flag does not apply to what was asked (None: all apply)."""
    from .synthetic.shapes import REAL
    given = {"--preset": args.preset is not None, "--quant": args.quant is not None, "--arch": args.arch is not None,
             "--seed": args.seed is not None, "--shape-only": args.shape_only, "--vocab": args.vocab is not None}
    if args.behaviour == "tool-caller":
        applies, what = {"--seed"}, "--behaviour tool-caller (a fixed Qwen3-MoE, F32)"
    elif args.behaviour == "looper":
        applies, what = {"--seed", "--arch", "--preset", "--quant"}, "--behaviour looper"
    elif args.arch:
        applies, what = {"--arch", "--seed", "--quant", "--shape-only", "--vocab"}, \
            f"--arch {args.arch} (the family's small shapes)"
    elif args.preset in REAL:
        applies, what = {"--preset", "--quant", "--shape-only"}, f"--preset {args.preset} (a real model's shapes)"
    else:
        applies, what = {"--preset", "--quant", "--seed", "--shape-only", "--vocab"}, "a DeepSeekMoE preset"
    if args.shape_only and "--seed" in applies:
        applies = applies - {"--seed"}
        what += " with --shape-only (no weights)"
    for flag, on in given.items():
        if on and flag not in applies:
            return f"{flag} does not apply to {what}"
    if args.preset in REAL and not args.arch and not args.behaviour:
        if not args.shape_only:
            return f"preset {args.preset} is a real model's size: only --shape-only (for planning)"
        if args.quant in ("F32", "F16"):
            return f"--quant {args.quant}: a real-size preset is typed as llama-quantize types it, one of " \
                   f"{', '.join(('BF16', 'Q8_0', *quantizer_types()))}"
    if args.behaviour == "looper" and args.quant not in (None, *WRITTEN):
        return f"--quant {args.quant}: the looper's weights are set by hand in {', '.join(WRITTEN)}"
    return None


def synth_command(args) -> int:
    why = inapplicable(args)
    if why:
        raise ShimmyError(why)
    path, what = _write(args)
    kind = "shape-only (sparse, not loadable)" if args.shape_only else \
        "weights set by hand, see shimmy_py/synthetic/behaviours.py" if args.behaviour else \
        "random weights: its text is gibberish"
    print(f"wrote {path} ({mib(path.stat().st_size, 1)}, {what}; {kind})")
    return 0


def _write(args) -> tuple[Path, str]:
    from .synthetic import behaviours, shapes
    seed = args.seed or 0
    if args.behaviour == "looper":
        from .synthetic.layouts import Shape
        from .synthetic.synth import DTYPES, PRESETS
        shape = PRESETS[args.preset].shape if args.preset in PRESETS and args.preset != "tiny" else Shape()
        return behaviours.looper(args.out, seed, args.arch or "deepseek", shape,
                                 DTYPES[(args.quant or "F32").lower()]), "looper"
    if args.behaviour:
        return behaviours.BEHAVIOURS[args.behaviour](args.out, seed=seed), args.behaviour
    if args.preset in shapes.REAL:
        quant = args.quant or shapes.DEFAULT_QUANT.get(args.preset, "Q4_K_M")
        return shapes.write_real(args.out, args.preset, quant), \
            f"preset {args.preset}, {quant} as llama-quantize types it"
    what = f"family {args.arch}" if args.arch else f"preset {args.preset or 'tiny'}"
    quant = args.quant
    if quant is None or quant in WRITTEN:
        return _written(args, args.out, quant), what + (f", {quant}" if quant else "")
    return _quantized(args, quant), f"{what}, {quant} by llama-quantize"


def _written(args, out, quant: str | None, shape_only: bool | None = None) -> Path:
    """The file in one of the writer's types (None: the preset's or family's own)."""
    from gguf import GGMLQuantizationType as T

    from .synthetic import families, synth
    shape_only = args.shape_only if shape_only is None else shape_only
    if args.arch:
        return families.write(out, args.arch, seed=args.seed or 0, shape_only=shape_only,
                              dtype=T[quant] if quant else T.F32, vocab=args.vocab)
    return synth.write(out, args.preset or "tiny", seed=args.seed or 0, dtype=quant.lower() if quant else None,
                       shape_only=shape_only, vocab=args.vocab)


def _quantized(args, quant: str) -> Path:
    """A llama-quantize mix: from an F16 file (shape-only: typed by --dry-run)."""
    from .synthetic import quant_mix
    out = Path(args.out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        f16 = _written(args, Path(tmp) / "f16.gguf", "F16")
        if args.shape_only:
            return quant_mix.write_shape_only(f16, out, quant)
        return quant_mix.quantize(f16, out, quant)
