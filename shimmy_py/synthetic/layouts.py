"""The tensor layouts of the synthetic families: a `Shape` (the sizes) and,
per family, the (name, ggml shape) of one layer's tensors and the metadata
keys beyond the common ones, as llama.cpp's loader of that architecture
requires them. families.py puts them together into files and tables."""
from __future__ import annotations

from dataclasses import dataclass

from gguf import GGUFValueType

from ..gguf_io.format import ATTENTION, LLM, ROPE, SSM

U32, F32, BOOL = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.BOOL


@dataclass(frozen=True)
class Shape:
    n_embd: int = 64
    n_layer: int = 3
    n_head: int = 4
    n_head_kv: int = 2
    n_ff_exp: int = 32
    n_ff_shexp: int = 64         # shared experts' width (DeepSeekMoE: n_ff_exp x their count)
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


def mla_ranks(s: Shape) -> dict:
    return dict(zip(("q_lora", "kv_lora", "qk_nope", "qk_rope", "v_head"), s.mla))


def deepseek2_layer(s: Shape, b: str) -> list:
    m, e, h = mla_ranks(s), s.n_embd, s.n_head
    out = [(b + "attn_norm.weight", (e,)), (b + "attn_q_a_norm.weight", (m["q_lora"],)),
           (b + "attn_kv_a_norm.weight", (m["kv_lora"],)),
           (b + "attn_q_a.weight", (e, m["q_lora"])),
           (b + "attn_q_b.weight", (m["q_lora"], h * (m["qk_nope"] + m["qk_rope"]))),
           (b + "attn_kv_a_mqa.weight", (e, m["kv_lora"] + m["qk_rope"])),
           (b + "attn_k_b.weight", (m["qk_nope"], m["kv_lora"], h)),
           (b + "attn_v_b.weight", (m["kv_lora"], m["v_head"], h)),
           (b + "attn_output.weight", (h * m["v_head"], e)), (b + "ffn_norm.weight", (e,))]
    return out + dense_first_then_moe(s, b)


def _index(b: str) -> int:
    """The layer index of a "blk.N." prefix."""
    return int(b.split(".")[1])


def _dense(s: Shape, b: str) -> list:
    """A SiLU-gated dense feed-forward of width s.ff."""
    e = s.n_embd
    return [(b + "ffn_gate.weight", (e, s.ff)), (b + "ffn_up.weight", (e, s.ff)), (b + "ffn_down.weight", (s.ff, e))]


def dense_first_then_moe(s: Shape, b: str) -> list:
    """DeepSeek-V3's and GLM-4.5's feed-forward: the first n_dense layers
    dense, the rest routed experts with a selection bias and one shared expert."""
    e = s.n_embd
    if _index(b) < s.n_dense:    # the leading dense layers
        return _dense(s, b)
    return experts(s, b, s.n_ff_exp) + [
        (b + "exp_probs_b.bias", (s.n_expert,)),
        (b + "ffn_gate_shexp.weight", (e, s.n_ff_exp)), (b + "ffn_up_shexp.weight", (e, s.n_ff_exp)),
        (b + "ffn_down_shexp.weight", (s.n_ff_exp, e))]


def nextn_block(s: Shape, b: str) -> list:
    """What a NextN block adds to a whole layer: the projection of [embedding;
    hidden state] and its norms (the optional embed_tokens/shared_head_head
    copies of the embedding and head are left out, as GLM-4.5-Air's files do)."""
    e = s.n_embd
    return [(b + "nextn.eh_proj.weight", (2 * e, e)), (b + "nextn.enorm.weight", (e,)),
            (b + "nextn.hnorm.weight", (e,)), (b + "nextn.shared_head_norm.weight", (e,))]


def qwen3next_layer(s: Shape, b: str) -> list:
    """Qwen3-Next: gated attention (q and its gate in one projection, per-head
    norms) every attn_interval-th layer, gated delta-net recurrent layers
    between; routed experts plus a gated shared expert in every layer."""
    e, d = s.n_embd, s.d
    out = [(b + "attn_norm.weight", (e,)), (b + "post_attention_norm.weight", (e,))]
    if (_index(b) + 1) % s.attn_interval == 0:
        out += [(b + "attn_q.weight", (e, 2 * s.n_head * d)), (b + "attn_k.weight", (e, s.n_head_kv * d)),
                (b + "attn_v.weight", (e, s.n_head_kv * d)), (b + "attn_output.weight", (s.n_head * d, e)),
                (b + "attn_q_norm.weight", (d,)), (b + "attn_k_norm.weight", (d,))]
    else:
        keys, values = s.ssm_state * s.ssm_groups, s.ssm_state * s.ssm_heads
        out += [(b + "attn_qkv.weight", (e, 2 * keys + values)), (b + "attn_gate.weight", (e, values)),
                (b + "ssm_conv1d.weight", (s.ssm_conv, 2 * keys + values)), (b + "ssm_dt.bias", (s.ssm_heads,)),
                (b + "ssm_a", (s.ssm_heads,)), (b + "ssm_ba.weight", (e, 2 * s.ssm_heads)),
                (b + "ssm_norm.weight", (s.ssm_state,)), (b + "ssm_out.weight", (values, e))]
    return out + experts(s, b, s.n_ff_exp) + shared(s, b)


def qwen3next_keys(s: Shape) -> list:
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
            (LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH, s.n_ff_shexp, U32),
            (LLM.FEED_FORWARD_LENGTH, s.ff, U32), (LLM.FULL_ATTENTION_INTERVAL, s.attn_interval, U32),
            (SSM.CONV_KERNEL, s.ssm_conv, U32), (SSM.STATE_SIZE, s.ssm_state, U32),
            (SSM.GROUP_COUNT, s.ssm_groups, U32), (SSM.TIME_STEP_RANK, s.ssm_heads, U32),
            (SSM.INNER_SIZE, s.ssm_state * s.ssm_heads, U32),
            (ROPE.DIMENSION_COUNT, s.d // 4, U32), (ROPE.FREQ_BASE, 10000000.0, F32)]


def deepseek2_keys(s: Shape) -> list:
    m = mla_ranks(s)
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
            (LLM.LEADING_DENSE_BLOCK_COUNT, s.n_dense, U32), (LLM.EXPERT_SHARED_COUNT, 1, U32),
            (LLM.EXPERT_WEIGHTS_SCALE, 2.5, F32), (LLM.EXPERT_WEIGHTS_NORM, True, BOOL),
            (LLM.EXPERT_GATING_FUNC, 2, U32),          # sigmoid
            (ATTENTION.Q_LORA_RANK, m["q_lora"], U32), (ATTENTION.KV_LORA_RANK, m["kv_lora"], U32),
            (ATTENTION.KEY_LENGTH_MLA, m["qk_nope"] + m["qk_rope"], U32),
            (ATTENTION.VALUE_LENGTH_MLA, m["v_head"], U32), (ROPE.DIMENSION_COUNT, m["qk_rope"], U32),
            (ROPE.FREQ_BASE, 10000.0, F32)]


def glm4moe_layer(s: Shape, b: str) -> list:
    d, e = s.d, s.n_embd
    out = [(b + "attn_norm.weight", (e,)), (b + "post_attention_norm.weight", (e,)),
           (b + "attn_q.weight", (e, s.n_head * d)), (b + "attn_q.bias", (s.n_head * d,)),
           (b + "attn_k.weight", (e, s.n_head_kv * d)), (b + "attn_k.bias", (s.n_head_kv * d,)),
           (b + "attn_v.weight", (e, s.n_head_kv * d)), (b + "attn_v.bias", (s.n_head_kv * d,)),
           (b + "attn_output.weight", (s.n_head * d, e))]
    return out + dense_first_then_moe(s, b)


def gpt_oss_layer(s: Shape, b: str) -> list:
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


def attention(s: Shape, b: str, biases: bool = False, qk_norm: bool = False) -> list:
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


def experts(s: Shape, b: str, width: int) -> list:
    return [(b + "ffn_gate_inp.weight", (s.n_embd, s.n_expert)),
            (b + "ffn_gate_exps.weight", (s.n_embd, width, s.n_expert)),
            (b + "ffn_up_exps.weight", (s.n_embd, width, s.n_expert)),
            (b + "ffn_down_exps.weight", (width, s.n_embd, s.n_expert))]


def shared(s: Shape, b: str) -> list:
    return [(b + "ffn_gate_inp_shexp.weight", (s.n_embd,)),
            (b + "ffn_gate_shexp.weight", (s.n_embd, s.n_ff_shexp)),
            (b + "ffn_up_shexp.weight", (s.n_embd, s.n_ff_shexp)),
            (b + "ffn_down_shexp.weight", (s.n_ff_shexp, s.n_embd))]


def deepseek_layer(s: Shape, b: str) -> list:
    """DeepSeekMoE's (llama.cpp architecture `deepseek`): the leading dense
    layers, then routed experts behind a softmax router and shared experts
    always on (no gate), n_ff_shexp wide (n_ff_shexp / n_ff_exp of them)."""
    e = s.n_embd
    if _index(b) < s.n_dense:
        return attention(s, b) + _dense(s, b)
    return attention(s, b) + experts(s, b, s.n_ff_exp) + [
        (b + "ffn_gate_shexp.weight", (e, s.n_ff_shexp)), (b + "ffn_up_shexp.weight", (e, s.n_ff_shexp)),
        (b + "ffn_down_shexp.weight", (s.n_ff_shexp, e))]


def deepseek_keys(s: Shape) -> list:
    return [(LLM.FEED_FORWARD_LENGTH, s.ff, U32), (LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
            (LLM.EXPERT_SHARED_COUNT, s.n_ff_shexp // s.n_ff_exp, U32),
            (LLM.LEADING_DENSE_BLOCK_COUNT, s.n_dense, U32), (ROPE.DIMENSION_COUNT, s.d, U32),
            (ROPE.FREQ_BASE, 10000.0, F32), (LLM.EXPERT_WEIGHTS_SCALE, 1.0, F32)]


def qwen3moe_layer(s: Shape, b: str) -> list:
    return attention(s, b, qk_norm=True) + experts(s, b, s.n_ff_exp)


def qwen3moe_keys(s: Shape) -> list:
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
            (ROPE.FREQ_BASE, 1000000.0, F32)]


def qwen2moe_layer(s: Shape, b: str) -> list:
    return attention(s, b, biases=True) + experts(s, b, s.n_ff_exp) + shared(s, b)


def qwen2moe_keys(s: Shape) -> list:
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
            (LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH, s.n_ff_shexp, U32),
            (LLM.FEED_FORWARD_LENGTH, s.ff, U32), (ROPE.FREQ_BASE, 1000000.0, F32)]


def mixtral_layer(s: Shape, b: str) -> list:
    return attention(s, b) + experts(s, b, s.n_ff_exp)


def mixtral_keys(s: Shape) -> list:
    return [(LLM.FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (ROPE.FREQ_BASE, 1000000.0, F32),
            (ROPE.DIMENSION_COUNT, s.d, U32)]


def glm4moe_keys(s: Shape) -> list:
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (LLM.FEED_FORWARD_LENGTH, s.ff, U32),
            (LLM.LEADING_DENSE_BLOCK_COUNT, s.n_dense, U32), (LLM.EXPERT_SHARED_COUNT, 1, U32),
            (LLM.EXPERT_WEIGHTS_SCALE, 1.0, F32), (LLM.EXPERT_WEIGHTS_NORM, True, BOOL),
            (LLM.EXPERT_GATING_FUNC, 2, U32), (ROPE.DIMENSION_COUNT, s.d // 2, U32),
            (ROPE.FREQ_BASE, 1000000.0, F32), (LLM.NEXTN_PREDICT_LAYERS, 1, U32)]


def gpt_oss_keys(s: Shape) -> list:
    return [(LLM.EXPERT_FEED_FORWARD_LENGTH, s.n_ff_exp, U32), (LLM.FEED_FORWARD_LENGTH, s.n_ff_exp, U32),
            (ATTENTION.SLIDING_WINDOW, 128, U32), (ROPE.FREQ_BASE, 150000.0, F32), (ROPE.DIMENSION_COUNT, s.d, U32)]
