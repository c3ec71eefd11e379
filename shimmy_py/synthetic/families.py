"""Runnable synthetic models of other MoE families: small random-weight GGUFs
with every hyper-parameter key and tensor llama.cpp's loader of that
architecture requires, the family's own tokenizer from the pinned llama.cpp
source, and the real model's chat template (the pinned source's
models/templates: Qwen3's, GLM-4.6's, DeepSeek-V3.1's, gpt-oss's; Mixtral's
from its tokenizer config; Qwen2-MoE keeps its vocabulary file's ChatML).

  qwen3moe   Qwen3-30B-A3B / 235B-A22B's layout: per-head RMS norms on q and k
             (attn_q_norm, attn_k_norm), grouped-query attention, routed
             experts only, softmax router; Qwen2 tokenizer.
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
             expert; Qwen2 tokenizer; no multi-token-prediction block.
  gpt-oss    gpt-oss-20b/120b's: attention sinks, biases everywhere, a post-
             attention norm, sliding-window attention on every other layer,
             routed experts in MXFP4 (as OpenAI ships them) with biases; the
             Llama 3 BPE tokenizer (gpt-oss's o200k is not among the pinned
             source's vocabulary files).

What differs from the real models: the widths (64, 2 to 3 layers, 4 to 8
experts), the random weights (gibberish text, real compute), and for Qwen3
no YaRN context extension keys. `synth.write` keeps DeepSeekMoE's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gguf import GGMLQuantizationType, GGUFValueType

from ..errors import ShimmyError
from ..gguf_io.format import ATTENTION, GENERAL, LLM, ROPE, SSM, key
from ..gguf_io.reader import read_header
from ..gguf_io.writer import GGUFBuilder
from .vocabularies import add_tokenizer, n_tokens, template_text, vocabulary_path


@dataclass(frozen=True)
class Shape:
    n_embd: int = 64
    n_layer: int = 3
    n_head: int = 4
    n_head_kv: int = 2
    n_ff_exp: int = 32
    n_ff_shexp: int = 64
    n_expert: int = 8
    n_expert_used: int = 2
    head_dim: int = 0            # 0: n_embd / n_head (Qwen3 sets 128 explicitly)
    n_vocab: int = 0             # 0: the tokenizer's; more pads it with unused tokens
    n_ctx_train: int = 4096
    n_ff: int = 0                # dense feed-forward width; 0: 4 * n_embd
    ssm_state: int = 16          # recurrent layers (qwen3next): head size of keys and values
    ssm_groups: int = 2          # key heads
    ssm_heads: int = 4           # value heads (a multiple of the key heads)
    ssm_conv: int = 4            # convolution kernel
    attn_interval: int = 2       # every Nth layer attends, the others are recurrent (Qwen3-Next: 4)
    n_dense: int = 1             # leading dense layers (deepseek2, glm4moe; DeepSeek-V3: 3)
    mla: tuple = (32, 32, 16, 8, 16)   # deepseek2: q_lora, kv_lora, qk_nope, qk_rope, v_head ranks

    @property
    def d(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def ff(self) -> int:
        return self.n_ff or 4 * self.n_embd


@dataclass(frozen=True)
class Family:
    arch: str
    vocabulary: str                                   # ggml-vocab-NAME.gguf in the pinned source
    layer: Callable[[Shape, str], list]               # (name, ggml shape) of one layer
    keys: Callable[[Shape], list]                     # (key template, value, type) beyond the common ones
    expert_type: GGMLQuantizationType = GGMLQuantizationType.F32   # the routed experts' weights
    nextn: int = 0                                    # NextN blocks after the trunk, as the real files carry
    template: str = ""   # the real model's chat template: a file of the pinned source's models/templates,
    #                      or the text itself (Jinja, as the real GGUF carries it); "": the vocabulary's


def _mla(s: Shape) -> dict:
    return dict(zip(("q_lora", "kv_lora", "qk_nope", "qk_rope", "v_head"), s.mla))


def _deepseek2_layer(s: Shape, b: str) -> list:
    m, e, h = _mla(s), s.n_embd, s.n_head
    out = [(b + "attn_norm.weight", (e,)), (b + "attn_q_a_norm.weight", (m["q_lora"],)),
           (b + "attn_kv_a_norm.weight", (m["kv_lora"],)),
           (b + "attn_q_a.weight", (e, m["q_lora"])),
           (b + "attn_q_b.weight", (m["q_lora"], h * (m["qk_nope"] + m["qk_rope"]))),
           (b + "attn_kv_a_mqa.weight", (e, m["kv_lora"] + m["qk_rope"])),
           (b + "attn_k_b.weight", (m["qk_nope"], m["kv_lora"], h)),
           (b + "attn_v_b.weight", (m["kv_lora"], m["v_head"], h)),
           (b + "attn_output.weight", (h * m["v_head"], e)), (b + "ffn_norm.weight", (e,))]
    return out + _dense_first_then_moe(s, b)


def _dense_first_then_moe(s: Shape, b: str) -> list:
    """DeepSeek-V3's and GLM-4.5's feed-forward: the first n_dense layers
    dense, the rest routed experts with a selection bias and one shared expert."""
    e = s.n_embd
    if int(b.split(".")[1]) < s.n_dense:    # the leading dense layers
        return [(b + "ffn_gate.weight", (e, s.ff)), (b + "ffn_up.weight", (e, s.ff)),
                (b + "ffn_down.weight", (s.ff, e))]
    return _experts(s, b, s.n_ff_exp) + [
        (b + "exp_probs_b.bias", (s.n_expert,)),
        (b + "ffn_gate_shexp.weight", (e, s.n_ff_exp)), (b + "ffn_up_shexp.weight", (e, s.n_ff_exp)),
        (b + "ffn_down_shexp.weight", (s.n_ff_exp, e))]


def _nextn_block(s: Shape, b: str) -> list:
    """What a NextN block adds to a whole layer: the projection of [embedding;
    hidden state] and its norms (the optional embed_tokens/shared_head_head
    copies of the embedding and head are left out, as GLM-4.5-Air's files do)."""
    e = s.n_embd
    return [(b + "nextn.eh_proj.weight", (2 * e, e)), (b + "nextn.enorm.weight", (e,)),
            (b + "nextn.hnorm.weight", (e,)), (b + "nextn.shared_head_norm.weight", (e,))]


def _qwen3next_layer(s: Shape, b: str) -> list:
    """Qwen3-Next: gated attention (q and its gate in one projection, per-head
    norms) every attn_interval-th layer, gated delta-net recurrent layers
    between; routed experts plus a gated shared expert in every layer."""
    e, d = s.n_embd, s.d
    out = [(b + "attn_norm.weight", (e,)), (b + "post_attention_norm.weight", (e,))]
    if (int(b.split(".")[1]) + 1) % s.attn_interval == 0:
        out += [(b + "attn_q.weight", (e, 2 * s.n_head * d)), (b + "attn_k.weight", (e, s.n_head_kv * d)),
                (b + "attn_v.weight", (e, s.n_head_kv * d)), (b + "attn_output.weight", (s.n_head * d, e)),
                (b + "attn_q_norm.weight", (d,)), (b + "attn_k_norm.weight", (d,))]
    else:
        keys, values = s.ssm_state * s.ssm_groups, s.ssm_state * s.ssm_heads
        out += [(b + "attn_qkv.weight", (e, 2 * keys + values)), (b + "attn_gate.weight", (e, values)),
                (b + "ssm_conv1d.weight", (s.ssm_conv, 2 * keys + values)), (b + "ssm_dt.bias", (s.ssm_heads,)),
                (b + "ssm_a", (s.ssm_heads,)), (b + "ssm_ba.weight", (e, 2 * s.ssm_heads)),
                (b + "ssm_norm.weight", (s.ssm_state,)), (b + "ssm_out.weight", (values, e))]
    return out + _experts(s, b, s.n_ff_exp) + _shared(s, b)


def _qwen3next_keys(s: Shape) -> list:
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
            (LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH, s.n_ff_shexp, U32),
            (LLM.FEED_FORWARD_LENGTH, s.ff, U32), (LLM.FULL_ATTENTION_INTERVAL, s.attn_interval, U32),
            (SSM.CONV_KERNEL, s.ssm_conv, U32), (SSM.STATE_SIZE, s.ssm_state, U32),
            (SSM.GROUP_COUNT, s.ssm_groups, U32), (SSM.TIME_STEP_RANK, s.ssm_heads, U32),
            (SSM.INNER_SIZE, s.ssm_state * s.ssm_heads, U32),
            (ROPE.DIMENSION_COUNT, s.d // 4, U32), (ROPE.FREQ_BASE, 10000000.0, F32)]


def _deepseek2_keys(s: Shape) -> list:
    m = _mla(s)
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
            (LLM.LEADING_DENSE_BLOCK_COUNT, s.n_dense, U32), (LLM.EXPERT_SHARED_COUNT, 1, U32),
            (LLM.EXPERT_WEIGHTS_SCALE, 2.5, F32), (LLM.EXPERT_WEIGHTS_NORM, True, GGUFValueType.BOOL),
            (LLM.EXPERT_GATING_FUNC, 2, U32),          # sigmoid
            (ATTENTION.Q_LORA_RANK, m["q_lora"], U32), (ATTENTION.KV_LORA_RANK, m["kv_lora"], U32),
            (ATTENTION.KEY_LENGTH_MLA, m["qk_nope"] + m["qk_rope"], U32),
            (ATTENTION.VALUE_LENGTH_MLA, m["v_head"], U32), (ROPE.DIMENSION_COUNT, m["qk_rope"], U32),
            (ROPE.FREQ_BASE, 10000.0, F32)]


def _glm4moe_layer(s: Shape, b: str) -> list:
    d, e = s.d, s.n_embd
    out = [(b + "attn_norm.weight", (e,)), (b + "post_attention_norm.weight", (e,)),
           (b + "attn_q.weight", (e, s.n_head * d)), (b + "attn_q.bias", (s.n_head * d,)),
           (b + "attn_k.weight", (e, s.n_head_kv * d)), (b + "attn_k.bias", (s.n_head_kv * d,)),
           (b + "attn_v.weight", (e, s.n_head_kv * d)), (b + "attn_v.bias", (s.n_head_kv * d,)),
           (b + "attn_output.weight", (s.n_head * d, e))]
    return out + _dense_first_then_moe(s, b)


def _gpt_oss_layer(s: Shape, b: str) -> list:
    d = s.d
    return [(b + "attn_norm.weight", (s.n_embd,)), (b + "post_attention_norm.weight", (s.n_embd,)),
            (b + "attn_q.weight", (s.n_embd, s.n_head * d)), (b + "attn_q.bias", (s.n_head * d,)),
            (b + "attn_k.weight", (s.n_embd, s.n_head_kv * d)), (b + "attn_k.bias", (s.n_head_kv * d,)),
            (b + "attn_v.weight", (s.n_embd, s.n_head_kv * d)), (b + "attn_v.bias", (s.n_head_kv * d,)),
            (b + "attn_output.weight", (s.n_head * d, s.n_embd)), (b + "attn_output.bias", (s.n_embd,)),
            (b + "attn_sinks.weight", (s.n_head,)),
            (b + "ffn_gate_inp.weight", (s.n_embd, s.n_expert)), (b + "ffn_gate_inp.bias", (s.n_expert,)),
            (b + "ffn_gate_exps.weight", (s.n_embd, s.n_ff_exp, s.n_expert)),
            (b + "ffn_gate_exps.bias", (s.n_ff_exp, s.n_expert)),
            (b + "ffn_up_exps.weight", (s.n_embd, s.n_ff_exp, s.n_expert)),
            (b + "ffn_up_exps.bias", (s.n_ff_exp, s.n_expert)),
            (b + "ffn_down_exps.weight", (s.n_ff_exp, s.n_embd, s.n_expert)),
            (b + "ffn_down_exps.bias", (s.n_embd, s.n_expert))]


def _attention(s: Shape, b: str, biases: bool = False, qk_norm: bool = False) -> list:
    d = s.d
    out = [(b + "attn_norm.weight", (s.n_embd,)),
           (b + "attn_q.weight", (s.n_embd, s.n_head * d)),
           (b + "attn_k.weight", (s.n_embd, s.n_head_kv * d)),
           (b + "attn_v.weight", (s.n_embd, s.n_head_kv * d)),
           (b + "attn_output.weight", (s.n_head * d, s.n_embd)),
           (b + "ffn_norm.weight", (s.n_embd,))]
    if biases:
        out += [(b + "attn_q.bias", (s.n_head * d,)), (b + "attn_k.bias", (s.n_head_kv * d,)),
                (b + "attn_v.bias", (s.n_head_kv * d,))]
    if qk_norm:
        out += [(b + "attn_q_norm.weight", (d,)), (b + "attn_k_norm.weight", (d,))]
    return out


def _experts(s: Shape, b: str, width: int) -> list:
    return [(b + "ffn_gate_inp.weight", (s.n_embd, s.n_expert)),
            (b + "ffn_gate_exps.weight", (s.n_embd, width, s.n_expert)),
            (b + "ffn_up_exps.weight", (s.n_embd, width, s.n_expert)),
            (b + "ffn_down_exps.weight", (width, s.n_embd, s.n_expert))]


def _shared(s: Shape, b: str) -> list:
    return [(b + "ffn_gate_inp_shexp.weight", (s.n_embd,)),
            (b + "ffn_gate_shexp.weight", (s.n_embd, s.n_ff_shexp)),
            (b + "ffn_up_shexp.weight", (s.n_embd, s.n_ff_shexp)),
            (b + "ffn_down_shexp.weight", (s.n_ff_shexp, s.n_embd))]


U32, F32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
# Mixtral-8x7B-Instruct-v0.1's template (its tokenizer_config.json); not among the pinned source's templates
MIXTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
FAMILIES = {
    "qwen3moe": Family("qwen3moe", "qwen2",
                       lambda s, b: _attention(s, b, qk_norm=True) + _experts(s, b, s.n_ff_exp),
                       lambda s: [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
                                  (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
                                  (ROPE.FREQ_BASE, 1000000.0, F32)], template="Qwen-Qwen3-0.6B.jinja"),
    "qwen2moe": Family("qwen2moe", "qwen2",
                       lambda s, b: _attention(s, b, biases=True) + _experts(s, b, s.n_ff_exp) + _shared(s, b),
                       lambda s: [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
                                  (LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH, s.n_ff_shexp, U32),
                                  (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
                                  (ROPE.FREQ_BASE, 1000000.0, F32)]),
    "mixtral": Family("llama", "llama-spm",
                      lambda s, b: _attention(s, b) + _experts(s, b, s.n_ff_exp),
                      lambda s: [(LLM.FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (ROPE.FREQ_BASE, 1000000.0, F32),
                                 (ROPE.DIMENSION_COUNT, s.d, U32)], template=MIXTRAL_TEMPLATE),
    "deepseek2": Family("deepseek2", "deepseek-llm", _deepseek2_layer, _deepseek2_keys,
                        template="deepseek-ai-DeepSeek-V3.1.jinja"),
    "qwen3next": Family("qwen3next", "qwen2", _qwen3next_layer, _qwen3next_keys, template="Qwen-Qwen3-0.6B.jinja"),
    "glm4moe": Family("glm4moe", "qwen2", _glm4moe_layer,
                      lambda s: [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
                                 (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
                                 (LLM.LEADING_DENSE_BLOCK_COUNT, s.n_dense, U32),
                                 (LLM.EXPERT_SHARED_COUNT, 1, U32), (LLM.EXPERT_WEIGHTS_SCALE, 1.0, F32),
                                 (LLM.EXPERT_WEIGHTS_NORM, True, GGUFValueType.BOOL),
                                 (LLM.EXPERT_GATING_FUNC, 2, U32), (ROPE.DIMENSION_COUNT, s.d // 2, U32),
                                 (ROPE.FREQ_BASE, 1000000.0, F32), (LLM.NEXTN_PREDICT_LAYERS, 1, U32)],
                      nextn=1, template="GLM-4.6.jinja"),
    "gpt-oss": Family("gpt-oss", "llama-bpe", _gpt_oss_layer,
                      lambda s: [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
                                 (LLM.FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
                                 (ATTENTION.SLIDING_WINDOW, 128, U32), (ROPE.FREQ_BASE, 150000.0, F32),
                                 (ROPE.DIMENSION_COUNT, s.d, U32)],
                      GGMLQuantizationType.MXFP4, template="openai-gpt-oss-120b.jinja"),
}


def tensors(family: Family, shape: Shape, n_vocab: int) -> list:
    out = [("token_embd.weight", (shape.n_embd, n_vocab))]
    for i in range(shape.n_layer + family.nextn):
        out += family.layer(shape, f"blk.{i}.")
        if i >= shape.n_layer:
            out += _nextn_block(shape, f"blk.{i}.")
    return out + [("output_norm.weight", (shape.n_embd,)), ("output.weight", (shape.n_embd, n_vocab))]


def write(out: str | os.PathLike, family: str, seed: int = 0, shape: Shape = Shape(),
          shape_only: bool = False, dtype: GGMLQuantizationType = GGMLQuantizationType.F32) -> Path:
    """Writes a runnable synthetic model of `family` (F32, random weights), or
    with `shape_only` a sparse file of its header and tensor table (matrices
    typed `dtype`) for planning and llama-quantize --dry-run."""
    from .synth import _producer, _Weights
    if family not in FAMILIES:
        raise ShimmyError(f"unknown family {family!r}; choose one of {', '.join(sorted(FAMILIES))}")
    f = FAMILIES[family]
    vocab = read_header(vocabulary_path(f.vocabulary))
    n_vocab = shape.n_vocab or n_tokens(vocab)
    if n_vocab < n_tokens(vocab):
        raise ShimmyError(f"n_vocab {n_vocab} is below the {f.vocabulary} tokenizer's {n_tokens(vocab)} tokens")
    b = GGUFBuilder()
    b.add(GENERAL.ARCHITECTURE, f.arch, GGUFValueType.STRING)
    b.add(GENERAL.NAME, f"synthetic-{family} (random weights)", GGUFValueType.STRING)
    b.add(GENERAL.FILE_TYPE, {GGMLQuantizationType.F32: 0, GGMLQuantizationType.F16: 1,
                              GGMLQuantizationType.BF16: 32}.get(dtype, 0), U32)
    mla = f.arch == "deepseek2"    # the cache holds one latent per token: kv_lora + rope wide, values kv_lora
    m = _mla(shape)
    k_len, v_len = (m["kv_lora"] + m["qk_rope"], m["kv_lora"]) if mla else (shape.d, shape.d)
    common = [(LLM.CONTEXT_LENGTH, shape.n_ctx_train, U32),
              (ATTENTION.KEY_LENGTH, k_len, U32), (ATTENTION.VALUE_LENGTH, v_len, U32),
              (LLM.EMBEDDING_LENGTH, shape.n_embd, U32),
              (LLM.BLOCK_COUNT, shape.n_layer + f.nextn, U32), (ATTENTION.HEAD_COUNT, shape.n_head, U32),
              (ATTENTION.HEAD_COUNT_KV, 1 if mla else shape.n_head_kv, U32),
              (LLM.EXPERT_COUNT, shape.n_expert, U32),
              (LLM.EXPERT_USED_COUNT, shape.n_expert_used, U32), (LLM.VOCAB_SIZE, n_vocab, U32),
              (ATTENTION.LAYERNORM_RMS_EPS, 1e-6, F32)]
    for template, value, vtype in common + f.keys(shape):
        b.add(key(template, f.arch), value, vtype)
    add_tokenizer(b, vocab, n_vocab, _template(f))
    w = _Weights(seed)
    for name, tshape in tensors(f, shape, n_vocab):
        if shape_only:
            vector = len(tshape) == 1 or "gate_inp" in name or name.endswith(".bias") or "ssm_conv1d" in name
            b.add_tensor(name, tshape, GGMLQuantizationType.F32 if vector else dtype, None)
        else:
            ttype = f.expert_type if name.endswith("_exps.weight") else GGMLQuantizationType.F32
            b.add_tensor(name, tshape, ttype, _producer(w, name, tshape, ttype))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    b.write(out)
    return out


def _template(f: Family) -> str | None:
    """The family's real chat template text (None: the vocabulary file's own)."""
    if not f.template:
        return None
    if not f.template.endswith(".jinja"):
        return f.template
    return template_text(f.template)
