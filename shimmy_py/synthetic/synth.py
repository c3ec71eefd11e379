"""Synthetic DeepSeekMoE GGUF models: real shapes and tokenizer, random weights.

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
from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType
from gguf.quants import quantize

from ..errors import ShimmyError
from ..gguf_io.format import ATTENTION, GENERAL, LLM, ROPE, TOKENIZER, key, n_elements, tensor_nbytes
from ..gguf_io.reader import read_header
from ..gguf_io.tensors import Hparams, Tensor, TensorTable, classify
from ..gguf_io.writer import GGUFBuilder

ARCH = "deepseek"

# DeepSeek LLM / DeepSeekMoE chat format (llama.cpp recognises it as "deepseek2").
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

DTYPES = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16, "q8_0": GGMLQuantizationType.Q8_0}
_FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7}  # llama_ftype


@dataclass(frozen=True)
class Preset:
    """Shapes of a DeepSeekMoE model (names follow llama.cpp's hparams)."""
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int              # width of the leading dense FFN layers
    n_ff_exp: int          # width of one routed (and one shared) expert
    n_expert: int
    n_expert_used: int
    n_expert_shared: int
    n_layer_dense_lead: int = 1
    n_ctx_train: int = 4096
    n_vocab: int = 102400  # the DeepSeek LLM tokenizer's size
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-6
    dtype: str = "f16"


PRESETS = {
    # Tests: written in about a second; ~53 MB, nearly all of it the two
    # vocabulary-sized matrices (token embedding and output head). F32 so that the
    # NumPy reference forward pass can be matched tightly.
    "tiny": Preset("tiny", n_embd=64, n_layer=3, n_head=4, n_head_kv=4, n_ff=192, n_ff_exp=32,
                   n_expert=8, n_expert_used=2, n_expert_shared=2, dtype="f32"),
    # Quantization tests: the smallest shapes whose every matrix row is a whole
    # number of K-quant blocks (256 values), so llama-quantize's Q4_K_M really
    # writes Q4_K and Q6_K tensors (tiny's 64-wide rows fall back to Q5_0/Q8_0).
    "tiny-k": Preset("tiny-k", n_embd=256, n_layer=2, n_head=4, n_head_kv=4, n_ff=512, n_ff_exp=256,
                     n_expert=8, n_expert_used=2, n_expert_shared=1),
    # Benchmarks: DeepSeekMoE's layout (64 experts, 6 active, 2 shared) at a size
    # that a 2-core, 24 GiB machine decodes at a usable speed (about 1.5 GB in F16).
    "bench": Preset("bench", n_embd=1024, n_layer=6, n_head=16, n_head_kv=16, n_ff=5472, n_ff_exp=512,
                    n_expert=64, n_expert_used=6, n_expert_shared=2),
    # The real DeepSeekMoE 16B shapes (32.8 GB in F16); usually written shape-only.
    "deepseek-moe-16b": Preset("deepseek-moe-16b", n_embd=2048, n_layer=28, n_head=16, n_head_kv=16,
                               n_ff=10944, n_ff_exp=1408, n_expert=64, n_expert_used=6,
                               n_expert_shared=2),
}


def vocab_path() -> Path:
    """The DeepSeek LLM vocabulary GGUF that native/build.sh copies from llama.cpp."""
    from ..native.install import find_install
    path = find_install() / "share" / "ggml-vocab-deepseek-llm.gguf"
    if not path.exists():
        raise ShimmyError(f"{path} is missing; run `make native` (native/build.sh)")
    return path


def tensor_shapes(p: Preset) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, ggml shape, is_matrix) of every tensor, in llama.cpp's order."""
    head_dim = p.n_embd // p.n_head
    kv = head_dim * p.n_head_kv
    shexp = p.n_ff_exp * p.n_expert_shared
    out = [("token_embd.weight", (p.n_embd, p.n_vocab), True)]
    for i in range(p.n_layer):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (p.n_embd,), False),
                (b + "attn_q.weight", (p.n_embd, p.n_embd), True),
                (b + "attn_k.weight", (p.n_embd, kv), True),
                (b + "attn_v.weight", (p.n_embd, kv), True),
                (b + "attn_output.weight", (p.n_embd, p.n_embd), True),
                (b + "ffn_norm.weight", (p.n_embd,), False)]
        if i < p.n_layer_dense_lead:
            out += [(b + "ffn_gate.weight", (p.n_embd, p.n_ff), True),
                    (b + "ffn_up.weight", (p.n_embd, p.n_ff), True),
                    (b + "ffn_down.weight", (p.n_ff, p.n_embd), True)]
        else:
            out += [(b + "ffn_gate_inp.weight", (p.n_embd, p.n_expert), False),
                    (b + "ffn_gate_exps.weight", (p.n_embd, p.n_ff_exp, p.n_expert), True),
                    (b + "ffn_up_exps.weight", (p.n_embd, p.n_ff_exp, p.n_expert), True),
                    (b + "ffn_down_exps.weight", (p.n_ff_exp, p.n_embd, p.n_expert), True),
                    (b + "ffn_gate_shexp.weight", (p.n_embd, shexp), True),
                    (b + "ffn_up_shexp.weight", (p.n_embd, shexp), True),
                    (b + "ffn_down_shexp.weight", (shexp, p.n_embd), True)]
    out += [("output_norm.weight", (p.n_embd,), False), ("output.weight", (p.n_embd, p.n_vocab), True)]
    return out


def _tensor_type(p: Preset, is_matrix: bool) -> GGMLQuantizationType:
    """Matrices in the preset's dtype; vectors (norms) and the router stay F32,
    as llama.cpp's converters keep them."""
    return DTYPES[p.dtype] if is_matrix else GGMLQuantizationType.F32


def tensor_table(preset: str | Preset, dtype: str | None = None) -> TensorTable:
    """The tensor table `write` would give the preset, built in memory: what
    the planner sees, with no file and no tokenizer (the path is "<preset>")."""
    p = _preset(preset, dtype)
    tensors = []
    for name, shape, is_matrix in tensor_shapes(p):
        layer, role = classify(name)
        ttype = _tensor_type(p, is_matrix)
        tensors.append(Tensor(name, layer, role, ttype.name, shape, tensor_nbytes(ttype, shape), n_elements(shape)))
    head_dim = p.n_embd // p.n_head
    hp = Hparams(arch=ARCH, n_layer=p.n_layer, n_embd=p.n_embd, n_head=p.n_head, n_head_kv=p.n_head_kv,
                 head_dim_k=head_dim, head_dim_v=head_dim, n_ctx_train=p.n_ctx_train, n_vocab=p.n_vocab,
                 n_expert=p.n_expert, n_expert_used=p.n_expert_used, n_expert_shared=p.n_expert_shared,
                 n_layer_dense_lead=p.n_layer_dense_lead)
    return TensorTable(f"<{p.name}>", hp, tuple(tensors))


def _preset(preset: str | Preset, dtype: str | None) -> Preset:
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if dtype is not None:
        if dtype not in DTYPES:
            raise ShimmyError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        p = replace(p, dtype=dtype)
    return p


def _metadata(b: GGUFBuilder, p: Preset, vocab) -> None:
    U32, F32, STR = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
    b.add(GENERAL.ARCHITECTURE, ARCH, STR)
    b.add(GENERAL.NAME, f"synthetic-{p.name} (random weights)", STR)
    b.add(GENERAL.FILE_TYPE, _FILE_TYPE[p.dtype], U32)
    for template, value in [(LLM.CONTEXT_LENGTH, p.n_ctx_train), (LLM.EMBEDDING_LENGTH, p.n_embd),
                            (LLM.BLOCK_COUNT, p.n_layer), (LLM.FEED_FORWARD_LENGTH, p.n_ff),
                            (ATTENTION.HEAD_COUNT, p.n_head), (ATTENTION.HEAD_COUNT_KV, p.n_head_kv),
                            (ROPE.DIMENSION_COUNT, p.n_embd // p.n_head), (LLM.VOCAB_SIZE, p.n_vocab),
                            (LLM.EXPERT_COUNT, p.n_expert), (LLM.EXPERT_USED_COUNT, p.n_expert_used),
                            (LLM.EXPERT_SHARED_COUNT, p.n_expert_shared),
                            (LLM.EXPERT_FEED_FORWARD_LENGTH, p.n_ff_exp),
                            (LLM.LEADING_DENSE_BLOCK_COUNT, p.n_layer_dense_lead)]:
        b.add(key(template, ARCH), value, U32)
    b.add(key(ROPE.FREQ_BASE, ARCH), p.rope_freq_base, F32)
    b.add(key(ATTENTION.LAYERNORM_RMS_EPS, ARCH), p.rms_eps, F32)
    b.add(key(LLM.EXPERT_WEIGHTS_SCALE, ARCH), 1.0, F32)
    tokens = vocab.metadata.get(TOKENIZER.LIST)
    n_tokens = getattr(tokens, "count", None) if not isinstance(tokens, list) else len(tokens)
    if n_tokens != p.n_vocab:
        raise ShimmyError(f"{vocab.path}: its tokenizer has {n_tokens} tokens, preset {p.name!r} needs "
                          f"{p.n_vocab} (DeepSeek LLM's vocabulary)")
    for name in vocab.metadata:   # the tokenizer, byte for byte; the chat template is DeepSeek's own
        if name.startswith("tokenizer.") and name != TOKENIZER.CHAT_TEMPLATE:
            b.add_raw(name, vocab.raw_kv(name))
    b.add(TOKENIZER.CHAT_TEMPLATE, CHAT_TEMPLATE, STR)


class _Weights:
    """Random weights; large tensors are slices of one random pool, so that a
    multi-GB model is written at disk speed instead of RNG speed."""
    POOL = 1 << 24

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self._pool: np.ndarray | None = None

    def normal(self, n: int) -> np.ndarray:
        if n <= self.POOL:
            return self.rng.standard_normal(n, dtype=np.float32)
        if self._pool is None:
            self._pool = self.rng.standard_normal(2 * self.POOL, dtype=np.float32)
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.POOL):
            k = min(self.POOL, n - start)
            at = int(self.rng.integers(0, self.POOL))
            out[start:start + k] = self._pool[at:at + k]
        return out


def _producer(w: _Weights, name: str, shape: tuple[int, ...],
              ttype: GGMLQuantizationType) -> Callable[[], bytes]:
    n = int(np.prod(shape))
    rows = tuple(reversed(shape))

    def produce() -> bytes:
        x = w.normal(n)
        if name.endswith("norm.weight"):
            x = 1.0 + 0.1 * x               # norms near 1
        elif name.endswith(".ssm_a"):
            x = -np.exp(0.5 * x)             # a recurrent decay rate: negative, as -exp(A_log)
        elif name != "token_embd.weight":
            x *= 1.0 / np.sqrt(shape[0])     # unit-variance outputs
        x = x.reshape(rows)
        if ttype == GGMLQuantizationType.F32:
            return x.tobytes()
        if ttype == GGMLQuantizationType.F16:
            return x.astype(np.float16).tobytes()
        return quantize(x, ttype).tobytes()
    return produce


def write(out: str | os.PathLike, preset: str | Preset = "tiny", seed: int = 0,
          dtype: str | None = None, shape_only: bool = False, vocab: str | os.PathLike | None = None) -> Path:
    """Writes a synthetic DeepSeekMoE GGUF to `out` and returns its path.

    `dtype` ("f32", "f16", "q8_0") overrides the preset's; vectors (norms) and the
    router stay F32, as llama.cpp's converters keep them. `shape_only` writes a
    valid header and tensor table with the data left as holes of a sparse file:
    enough for planning, not for loading. `vocab`: the tokenizer GGUF to copy
    (default: DeepSeek LLM's, from the llama.cpp build; no build is needed
    when it is given)."""
    p = _preset(preset, dtype)
    tokenizer = read_header(vocab if vocab is not None else vocab_path())
    b = GGUFBuilder()
    _metadata(b, p, tokenizer)
    w = _Weights(seed)
    for name, shape, is_matrix in tensor_shapes(p):
        ttype = _tensor_type(p, is_matrix)
        b.add_tensor(name, shape, ttype, None if shape_only else _producer(w, name, shape, ttype))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    b.write(out)
    return out
