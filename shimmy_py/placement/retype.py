"""A model's tensor table as `llama-quantize` would write it with other
types: which tensors a type applies to (the routed experts only, or every
weight the plan keeps in host RAM, what an accelerator holds kept as it is),
the type each gets (llama.cpp's fallback where a row is not a whole number
of the type's blocks), and the bytes that follow. Pure: the planner plans
the retyped table as it plans a file, so that `plan` can say which smaller
file would run faster in the same memory, and `shimmy-py quantize` makes it.

Quantization is lossy: what this module sizes is another model, whose
answers differ; `quantize` measures by how much.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from ..errors import PlacementError

# a type people pick for routed experts -> the llama-quantize file type whose name it goes by
TYPES = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K": "Q5_K_M", "Q4_K": "Q4_K_M", "Q5_0": "Q5_0", "Q4_0": "Q4_0",
         "MXFP4": "MXFP4_MOE"}
PROPOSED = ("Q8_0", "Q6_K", "Q4_K")          # what `plan` proposes, most precise first
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}       # llama-quant.cpp tensor_type_fallback
_FULL = ("F32", "F16", "BF16")
_NOT_QUANTIZED = ("_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d", "shortconv.conv.weight", "altup",
                  "laurel", "per_layer_model_proj", "ffn_gate_tid2eid.weight")


@dataclass(frozen=True)
class Retyping:
    """Which tensors take `type`: the routed experts of `layers` (None: every
    layer), and with experts_only False every other quantizable host weight."""
    type: str
    experts_only: bool = True
    layers: frozenset[int] | None = None

    def __post_init__(self):
        if self.type not in TYPES:
            raise PlacementError(f"type {self.type}: choose one of {', '.join(TYPES)}")

    @property
    def ftype(self) -> str:
        return TYPES[self.type]

    def label(self) -> str:
        which = "routed experts" if self.experts_only else "host weights"
        if self.layers is not None:
            which += f" of {len(self.layers)} layers ({layer_spans(self.layers)})"
        return f"{which} at {self.type}"

    def short(self) -> str:
        which = "host" if not self.experts_only else "experts"
        return f"{self.type} {which}" if self.layers is None else f"{self.type} {len(self.layers)} layers"

    def args(self) -> list[str]:
        """The `shimmy-py quantize` flags that make this file."""
        return ["--type", self.type, *(["--experts-only"] if self.experts_only else []),
                *(["--layers", layer_spans(self.layers)] if self.layers is not None else [])]


def quantizable(t) -> bool:
    """Whether llama-quantize may change this tensor's type (its tensor_allows_quantization)."""
    return len(t.shape) >= 2 and t.name.endswith("weight") and not any(s in t.name for s in _NOT_QUANTIZED) \
        and t.role != "mtp"


def row_type(t, target: str) -> str:
    """The type llama-quantize gives `t` when asked for `target`: a K-type
    falls back to a 32-block type when ne0 is not a multiple of 256, and
    that to F16 when ne0 is not a multiple of 32."""
    block = GGML_QUANT_SIZES[GGMLQuantizationType[target]][0]
    if t.shape[0] % block == 0:
        return target
    fallback = _FALLBACK.get(target, target)
    return fallback if t.shape[0] % GGML_QUANT_SIZES[GGMLQuantizationType[fallback]][0] == 0 else "F16"


def type_bytes(t, ggml_type: str) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type]]
    rows = t.n_params // t.shape[0]
    return rows * (t.shape[0] // block) * size


def target_types(table, retyping: Retyping, on_accelerator=frozenset()) -> dict[str, str]:
    """Tensor name -> the type it gets (its own where retyping leaves it).
    `on_accelerator`: names the plan puts on an accelerator (kept as they are)."""
    out = {}
    for t in table.tensors:
        chosen = t.ggml_type
        if quantizable(t) and t.name not in on_accelerator and \
                (t.role == "routed_experts" or not retyping.experts_only) and \
                (retyping.layers is None or t.layer in retyping.layers or t.role != "routed_experts"):
            chosen = row_type(t, retyping.type)
        out[t.name] = chosen
    return out


def requantized(table, types: dict[str, str]) -> list[str]:
    """Tensors that would change type although already quantized (llama-quantize refuses them by default)."""
    return [t.name for t in table.tensors if types[t.name] != t.ggml_type and t.ggml_type not in _FULL]


def retyped(table, types: dict[str, str]):
    """The tensor table with `types` applied and its bytes as they would be written."""
    tensors = tuple(t if types[t.name] == t.ggml_type else
                    replace(t, ggml_type=types[t.name], nbytes=type_bytes(t, types[t.name]))
                    for t in table.tensors)
    return replace(table, tensors=tensors)


def moe_layers(table) -> list[int]:
    return sorted({t.layer for t in table.tensors if t.role == "routed_experts" and t.layer is not None})


def layer_spans(layers) -> str:
    """{1,2,3,7} -> "1-3,7"."""
    out, run = [], []
    for n in sorted(layers):
        if run and n != run[-1] + 1:
            out.append(run)
            run = []
        run.append(n)
    if run:
        out.append(run)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in out)


def parse_layers(text: str) -> frozenset[int]:
    """"1-3,7" -> {1,2,3,7}; an error names what is not a layer list."""
    layers = set()
    try:
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            a, b = int(lo), int(hi) if dash else int(lo)
            if a < 0 or b < a:
                raise ValueError(part)
            layers.update(range(a, b + 1))
    except ValueError:
        raise PlacementError(f"--layers {text!r}: not a list of layers like 1-13 or 2,5,7-9") from None
    return frozenset(layers)
