"""Runnable synthetic models of other MoE families: small random-weight GGUFs
with every hyper-parameter key and tensor llama.cpp's loader of that
architecture requires, the family's own tokenizer from the pinned llama.cpp
source, and the real model's chat template (the pinned source's
models/templates: Qwen3's, GLM-4.6's, DeepSeek-V3.1's, gpt-oss's; Mixtral's
from its tokenizer config; Qwen2-MoE keeps its vocabulary file's ChatML).

  qwen3moe   Qwen3-30B-A3B / 235B-A22B's layout: per-head RMS norms on q and k
             (attn_q_norm, attn_k_norm), grouped-query attention, routed
             experts only, softmax router; Qwen2 tokenizer with Qwen3's added
             tokens (the tool-call and think tags) at their real ids.
  qwen2moe   Qwen1.5/Qwen2-MoE's: q/k/v biases, routed experts plus a shared
             expert behind a sigmoid gate (ffn_gate_inp_shexp); Qwen2 tokenizer.
  mixtral    Mixtral-8x7B's (llama.cpp architecture `llama` with experts):
             8 routed experts, 2 active, no shared expert; Llama SPM tokenizer.
  deepseek2  DeepSeek-V3/R1's (and Kimi K2's): multi-head latent attention
             (attn_q_a/q_b, attn_kv_a_mqa, attn_k_b/attn_v_b; the cache holds
             the compressed latent), a leading dense layer, routed experts with
             a sigmoid router and exp_probs_b, one shared expert; DeepSeek LLM
             tokenizer (V3's own is not in the pinned source).
  glm4moe    GLM-4.5 / 4.5-Air's: q/k/v biases, a post-attention norm instead
             of an FFN norm, partial rotary embedding (half the head), a leading
             dense layer, sigmoid router with exp_probs_b, one shared expert,
             and the multi-token-prediction (NextN) block its files carry as
             the last layer (llama.cpp skips it by default); Qwen2 tokenizer
             (GLM's own is not in the pinned source).
  qwen3next  Qwen3-Next-80B-A3B's, a hybrid with recurrent state: gated delta-
             net layers (attn_qkv, attn_gate, ssm_conv1d, ssm_a, ssm_ba,
             ssm_dt, ssm_norm, ssm_out: a fixed-size state per sequence, no KV
             cache) and gated full attention every attn_interval-th layer
             (2 here, 4 in the real model), routed experts and a gated shared
             expert; Qwen3's tokenizer as qwen3moe's; no multi-token-prediction
             block.
  gpt-oss    gpt-oss-20b/120b's: attention sinks, biases everywhere, a post-
             attention norm, sliding-window attention on every other layer,
             routed experts in MXFP4 (as OpenAI ships them) with biases; the
             Llama 3 BPE tokenizer (gpt-oss's o200k is not among the pinned
             source's vocabulary files).

  deepseek   DeepSeekMoE 16B's (llama.cpp architecture `deepseek`), the model
             this project was born from: a leading dense layer, then 64
             routed experts (6 active) behind a softmax router whose top-k
             weights are not renormalised, and 2 shared experts always on;
             DeepSeek LLM tokenizer and chat format. synth.py names its presets
             (tiny, tiny-k, bench, and the real deepseek-moe-16b shapes).

What differs from the real models: the widths (64, 2 to 3 layers, 4 to 8
experts), the random weights (gibberish text, real compute), and for Qwen3
no YaRN context extension keys.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType

from ..errors import ShimmyError
from ..gguf_io.format import ATTENTION, GENERAL, LLM, key, tensor_nbytes
from ..gguf_io.reader import GGUFHeader, TensorInfo, read_header
from ..gguf_io.tensors import TensorTable, read_table
from ..gguf_io.writer import GGUFBuilder
from . import layouts as L
from .layouts import F32, U32, Shape
from .vocabularies import QWEN3_ADDED, add_tokenizer, n_tokens, template_text, vocabulary_path
from .weights import RandomWeights, fixed, producer

T = GGMLQuantizationType


@dataclass(frozen=True)
class Family:
    arch: str
    vocabulary: str                                   # ggml-vocab-NAME.gguf in the pinned source
    layer: Callable[[Shape, str], list]               # (name, ggml shape) of one layer
    keys: Callable[[Shape], list]                     # (key template, value, type) beyond the common ones
    expert_type: GGMLQuantizationType = T.F32         # the routed experts' weights in a runnable file
    nextn: int = 0                                    # NextN blocks after the trunk, as the real files carry
    template: str = ""   # the real model's chat template: a file of the pinned source's models/templates,
    #                      or the text itself (Jinja, as the real GGUF carries it); "": the vocabulary's
    added: tuple = ()    # (id, text, type): the real model's added tokens over the vocabulary file's placeholders


# DeepSeek LLM / DeepSeekMoE's chat format (its tokenizer config's template)
DEEPSEEK_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# Mixtral-8x7B-Instruct-v0.1's template (its tokenizer_config.json); not among the pinned source's templates
MIXTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
FAMILIES = {
    "deepseek": Family("deepseek", "deepseek-llm", L.deepseek_layer, L.deepseek_keys, template=DEEPSEEK_TEMPLATE),
    "qwen3moe": Family("qwen3moe", "qwen2", L.qwen3moe_layer, L.qwen3moe_keys, template="Qwen-Qwen3-0.6B.jinja",
                       added=QWEN3_ADDED),
    "qwen2moe": Family("qwen2moe", "qwen2", L.qwen2moe_layer, L.qwen2moe_keys),
    "mixtral": Family("llama", "llama-spm", L.mixtral_layer, L.mixtral_keys, template=MIXTRAL_TEMPLATE),
    "deepseek2": Family("deepseek2", "deepseek-llm", L.deepseek2_layer, L.deepseek2_keys,
                        template="deepseek-ai-DeepSeek-V3.1.jinja"),
    "qwen3next": Family("qwen3next", "qwen2", L.qwen3next_layer, L.qwen3next_keys, template="Qwen-Qwen3-0.6B.jinja",
                        added=QWEN3_ADDED),
    "glm4moe": Family("glm4moe", "qwen2", L.glm4moe_layer, L.glm4moe_keys, nextn=1, template="GLM-4.6.jinja"),
    "gpt-oss": Family("gpt-oss", "llama-bpe", L.gpt_oss_layer, L.gpt_oss_keys, T.MXFP4,
                      template="openai-gpt-oss-120b.jinja"),
}
_FILE_TYPE = {T.F32: 0, T.F16: 1, T.Q8_0: 7, T.BF16: 32}   # llama_ftype


def _family(family: str) -> Family:
    if family not in FAMILIES:
        raise ShimmyError(f"unknown family {family!r}; choose one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family]


def tensors(family: Family, shape: Shape, n_vocab: int) -> list:
    """(name, ggml shape) of every tensor, in llama.cpp's order."""
    out = [("token_embd.weight", (shape.n_embd, n_vocab))]
    for i in range(shape.n_layer + family.nextn):
        out += family.layer(shape, f"blk.{i}.")
        if i >= shape.n_layer:
            out += L.nextn_block(shape, f"blk.{i}.")
    return out + [("output_norm.weight", (shape.n_embd,)), ("output.weight", (shape.n_embd, n_vocab))]


def metadata(family: Family, shape: Shape, n_vocab: int) -> list:
    """(key template, value, type) of every hyper-parameter key."""
    mla = family.arch == "deepseek2"    # the cache holds one latent per token: kv_lora + rope wide, values kv_lora
    m = L.mla_ranks(shape)
    k_len, v_len = (m["kv_lora"] + m["qk_rope"], m["kv_lora"]) if mla else (shape.d, shape.d)
    common = [(LLM.CONTEXT_LENGTH, shape.n_ctx_train, U32),
              (ATTENTION.KEY_LENGTH, k_len, U32), (ATTENTION.VALUE_LENGTH, v_len, U32),
              (LLM.EMBEDDING_LENGTH, shape.n_embd, U32),
              (LLM.BLOCK_COUNT, shape.n_layer + family.nextn, U32), (ATTENTION.HEAD_COUNT, shape.n_head, U32),
              (ATTENTION.HEAD_COUNT_KV, 1 if mla else shape.n_head_kv, U32),
              (LLM.EXPERT_COUNT, shape.n_expert, U32),
              (LLM.EXPERT_USED_COUNT, shape.n_expert_used, U32), (LLM.VOCAB_SIZE, n_vocab, U32),
              (ATTENTION.LAYERNORM_RMS_EPS, 1e-6, F32)]
    return common + family.keys(shape)


def tensor_type(family: Family, name: str, tshape: tuple, dtype: T, runnable: bool) -> T:
    """Vectors (norms, biases, routers, the convolution) stay F32, as llama.cpp's
    converters keep them; matrices take `dtype`; in a runnable file the routed
    experts take the family's own type (gpt-oss ships MXFP4)."""
    if len(tshape) == 1 or "gate_inp" in name or name.endswith(".bias") or "ssm_conv1d" in name:
        return T.F32
    if runnable and name.endswith("_exps.weight") and family.expert_type != T.F32:
        return family.expert_type
    return dtype


def write(out: str | os.PathLike, family: str, seed: int = 0, shape: Shape = Shape(), shape_only: bool = False,
          dtype: GGMLQuantizationType = T.F32, vocab: str | os.PathLike | None = None, name: str = "",
          arrays: Callable[[str, tuple], np.ndarray | None] | None = None, made: str | None = None,
          template: str | None = None) -> Path:
    """Writes a runnable synthetic model of `family` (random weights, matrices
    typed `dtype`), or with `shape_only` a sparse file of its header and tensor
    table for planning and llama-quantize --dry-run. `vocab`: the tokenizer
    GGUF to copy, of the model's vocabulary size (default: the family's, from
    the build, padded with unused tokens up to shape.n_vocab). `arrays(name,
    ggml shape)`: a tensor's values set by hand (numpy's shape, the reverse
    of ggml's), or None for random ones (behaviours.py). `made`: how the
    weights were made, for general.name (default: random, or set by hand);
    `template`: the chat template instead of the family's."""
    f = _family(family)
    tokenizer = read_header(vocab if vocab is not None else vocabulary_path(f.vocabulary))
    n_vocab = shape.n_vocab or n_tokens(tokenizer)
    if n_vocab < n_tokens(tokenizer) or (vocab is not None and n_vocab != n_tokens(tokenizer)):
        raise ShimmyError(f"{tokenizer.path}: its tokenizer has {n_tokens(tokenizer)} tokens, the model "
                          f"{name or family} needs {n_vocab}")
    b = GGUFBuilder()
    b.add(GENERAL.ARCHITECTURE, f.arch, GGUFValueType.STRING)
    if made is None:
        made = "synthetic, " + ("weights set by hand" if arrays is not None else "random weights")
    b.add(GENERAL.NAME, f"{name or family} ({made})", GGUFValueType.STRING)
    b.add(GENERAL.FILE_TYPE, _FILE_TYPE.get(dtype, 0), U32)
    for name_template, value, vtype in metadata(f, shape, n_vocab):
        b.add(key(name_template, f.arch), value, vtype)
    add_tokenizer(b, tokenizer, n_vocab, template if template is not None else _template(f), f.added)
    w = RandomWeights(seed)
    for tname, tshape in tensors(f, shape, n_vocab):
        ttype = tensor_type(f, tname, tshape, dtype, runnable=not shape_only)
        chosen = arrays(tname, tshape) if arrays is not None and not shape_only else None
        make = producer(w, tname, tshape, ttype) if chosen is None else fixed(chosen, tshape, ttype)
        b.add_tensor(tname, tshape, ttype, None if shape_only else make)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    b.write(out)
    return out


def table(family: str, shape: Shape, dtype: GGMLQuantizationType = T.F32, path: str = "",
          type_of: Callable[[str, tuple], GGMLQuantizationType] | None = None) -> TensorTable:
    """The tensor table `write(..., shape_only=True)` would give, built in
    memory through the same reader (no file, no tokenizer, no build):
    `shape.n_vocab` must be set. `type_of(name, shape)`: each tensor's type
    instead of `dtype`'s rule."""
    f = _family(family)
    if not shape.n_vocab:
        raise ShimmyError("an in-memory table needs the vocabulary size: set Shape.n_vocab")
    meta = {"general.architecture": f.arch}
    meta.update({key(template, f.arch): value for template, value, _ in metadata(f, shape, shape.n_vocab)})
    infos = []
    for name, tshape in tensors(f, shape, shape.n_vocab):
        ttype = type_of(name, tshape) if type_of else tensor_type(f, name, tshape, dtype, runnable=False)
        infos.append(TensorInfo(name, ttype, tuple(tshape), 0, tensor_nbytes(ttype, tshape)))
    header = GGUFHeader(path or f"<{family}>", 3, meta, {}, tuple(infos), 32, 0, 0)
    return read_table(header)


def _template(f: Family) -> str | None:
    """The family's real chat template text (None: the vocabulary file's own)."""
    if not f.template:
        return None
    if not f.template.endswith(".jinja"):
        return f.template
    return template_text(f.template)
