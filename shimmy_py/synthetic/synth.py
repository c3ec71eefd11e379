"""Synthetic DeepSeekMoE GGUF models by preset: the `deepseek` family
(families.py) at named sizes, real tokenizer, random weights.

Nothing is downloaded anywhere in this project, so tests, demos and benchmarks
run on models written here: llama.cpp architecture `deepseek` (a leading dense
layer, then MoE layers with routed experts `ffn_*_exps`, shared experts
`ffn_*_shexp` and a softmax router `ffn_gate_inp`), carrying the real DeepSeek
LLM tokenizer copied byte for byte from llama.cpp's
`models/ggml-vocab-deepseek-llm.gguf`. The compute is real; the text is
gibberish, because the weights are random.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from gguf import GGMLQuantizationType

from ..errors import ShimmyError
from ..gguf_io.tensors import TensorTable
from . import families
from .layouts import Shape
from .vocabularies import vocabulary_path

FAMILY = "deepseek"
DTYPES = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16, "bf16": GGMLQuantizationType.BF16,
          "q8_0": GGMLQuantizationType.Q8_0}
DEEPSEEK_LLM_VOCAB = 102400   # the DeepSeek LLM tokenizer's size


@dataclass(frozen=True)
class Preset:
    """A DeepSeekMoE size: its shapes and the type of its matrices."""
    name: str
    shape: Shape
    dtype: str = "f16"


def moe_shape(n_embd, n_layer, n_head, n_ff, n_ff_exp, n_expert, n_expert_used, n_shared) -> Shape:
    """DeepSeekMoE's layout (one dense lead layer, shared experts) at these sizes, its vocabulary."""
    return Shape(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head, n_ff=n_ff, n_ff_exp=n_ff_exp,
                 n_ff_shexp=n_ff_exp * n_shared, n_expert=n_expert, n_expert_used=n_expert_used, n_dense=1,
                 n_vocab=DEEPSEEK_LLM_VOCAB)


PRESETS = {
    # Tests: written in about a second; ~53 MB, nearly all of it the two
    # vocabulary-sized matrices (token embedding and output head). F32 so that the
    # NumPy reference forward pass can be matched tightly.
    "tiny": Preset("tiny", moe_shape(64, 3, 4, 192, 32, 8, 2, 2), "f32"),
    # Quantization tests: the smallest shapes whose every matrix row is a whole
    # number of K-quant blocks (256 values), so llama-quantize's Q4_K_M really
    # writes Q4_K and Q6_K tensors (tiny's 64-wide rows fall back to Q5_0/Q8_0).
    "tiny-k": Preset("tiny-k", moe_shape(256, 2, 4, 512, 256, 8, 2, 1)),
    # Benchmarks: DeepSeekMoE's layout (64 experts, 6 active, 2 shared) at a size
    # that a 2-core, 24 GiB machine decodes at a usable speed (about 1.5 GB in F16).
    "bench": Preset("bench", moe_shape(1024, 6, 16, 5472, 512, 64, 6, 2)),
    # Streaming tests: the bench layout at half the width (about 0.7 GB in F16, 0.5 GB of it
    # routed experts), larger than the memory cgroup tests/test_streaming.py runs it in.
    "stream": Preset("stream", moe_shape(512, 6, 8, 2048, 512, 64, 6, 2)),
    # The real DeepSeekMoE 16B shapes (32.8 GB in F16); usually written shape-only.
    "deepseek-moe-16b": Preset("deepseek-moe-16b", moe_shape(2048, 28, 16, 10944, 1408, 64, 6, 2)),
}


def vocab_path() -> Path:
    """The DeepSeek LLM vocabulary GGUF that native/build.sh copies from llama.cpp."""
    return vocabulary_path("deepseek-llm")


def _preset(preset: str | Preset, dtype: str | None) -> Preset:
    if isinstance(preset, str) and preset not in PRESETS:
        raise ShimmyError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if dtype is not None:
        if dtype not in DTYPES:
            raise ShimmyError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        p = replace(p, dtype=dtype)
    return p


def tensor_table(preset: str | Preset, dtype: str | None = None) -> TensorTable:
    """The tensor table `write` would give the preset, built in memory: what
    the planner sees, with no file and no tokenizer (the path is "<preset>")."""
    p = _preset(preset, dtype)
    return families.table(FAMILY, p.shape, DTYPES[p.dtype], path=f"<{p.name}>")


def write(out: str | os.PathLike, preset: str | Preset = "tiny", seed: int = 0,
          dtype: str | None = None, shape_only: bool = False, vocab: str | os.PathLike | None = None) -> Path:
    """Writes a synthetic DeepSeekMoE GGUF to `out` and returns its path.

    `dtype` ("f32", "f16", "bf16", "q8_0") overrides the preset's; vectors (norms) and the
    router stay F32, as llama.cpp's converters keep them. `shape_only` writes a
    valid header and tensor table with the data left as holes of a sparse file:
    enough for planning, not for loading. `vocab`: the tokenizer GGUF to copy
    (default: DeepSeek LLM's, from the llama.cpp build)."""
    p = _preset(preset, dtype)
    return families.write(out, FAMILY, seed=seed, shape=p.shape, shape_only=shape_only, dtype=DTYPES[p.dtype],
                          vocab=vocab, name=p.name)
