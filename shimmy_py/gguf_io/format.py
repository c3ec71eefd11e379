"""GGUF format facts from one source, the `gguf` package: metadata key names
(`gguf.Keys`, formatted per architecture) and the byte size of a tensor of a
given ggml type and shape (`gguf.GGML_QUANT_SIZES`)."""
from __future__ import annotations

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, Keys

LLM, ATTENTION, ROPE, GENERAL, TOKENIZER = Keys.LLM, Keys.Attention, Keys.Rope, Keys.General, Keys.Tokenizer
SSM = Keys.SSM
RECURRENT_LAYERS = "{arch}.attention.recurrent_layers"   # llama.cpp's LLM_KV_ATTENTION_RECURRENT_LAYERS; not in gguf


def key(template: str, arch: str) -> str:
    """A per-architecture key: key(LLM.EXPERT_COUNT, "deepseek") == "deepseek.expert_count"."""
    return template.format(arch=arch)


def n_elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def tensor_nbytes(ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of `shape` (ggml order, ne0 first) stored as `ggml_type`.
    Raises ValueError when a row is not a whole number of quantization blocks."""
    block, type_size = GGML_QUANT_SIZES[ggml_type]
    if shape[0] % block:
        raise ValueError(f"a row of {shape[0]} is not a multiple of the {ggml_type.name} block size {block}")
    return n_elements(shape) // block * type_size
