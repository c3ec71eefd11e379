"""Shape-only GGUF tables in the tensor layouts of other MoE architectures
(qwen2moe, qwen3moe, mixtral-style llama, gpt-oss, deepseek2), written to test
that the planner classifies each correctly. Tiny shapes; never loaded."""
from __future__ import annotations

import os

from gguf import GGMLQuantizationType, GGUFValueType

from shimmy_py.gguf_io.format import ATTENTION, GENERAL, LLM, key
from shimmy_py.gguf_io.writer import GGUFBuilder

E, N_EMBD, N_FF, N_LAYER = 8, 64, 32, 4  # experts, width, expert width, layers

_ATTN = ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
         "ffn_norm.weight"]
_EXPS = ["ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"]
_SHEXP = ["ffn_gate_inp_shexp.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight"]

LAYOUTS: dict[str, list[str]] = {
    "qwen2moe": _ATTN + ["attn_q.bias", "attn_k.bias", "attn_v.bias"] + _EXPS + _SHEXP,
    "qwen3moe": _ATTN + ["attn_q_norm.weight", "attn_k_norm.weight"] + _EXPS,
    "llama": _ATTN + _EXPS,  # Mixtral-style
    "gpt-oss": ["attn_norm.weight", "post_attention_norm.weight", "attn_q.weight", "attn_q.bias",
                "attn_k.weight", "attn_k.bias", "attn_v.weight", "attn_v.bias", "attn_output.weight",
                "attn_output.bias", "attn_sinks.weight", "ffn_gate_inp.weight", "ffn_gate_inp.bias",
                "ffn_gate_exps.weight", "ffn_gate_exps.bias", "ffn_up_exps.weight", "ffn_up_exps.bias",
                "ffn_down_exps.weight", "ffn_down_exps.bias"],
    "deepseek2": ["attn_norm.weight", "attn_q_a.weight", "attn_q_a_norm.weight", "attn_q_b.weight",
                  "attn_kv_a_mqa.weight", "attn_kv_a_norm.weight", "attn_k_b.weight", "attn_v_b.weight",
                  "attn_output.weight", "ffn_norm.weight", "exp_probs_b.bias"] + _EXPS + _SHEXP[1:],
}
DENSE_LEAD = {"deepseek2": 1}


def _shape(suffix: str) -> tuple[int, ...]:
    if "_exps" in suffix:
        return (N_EMBD, N_FF, E) if suffix.endswith(".weight") else (N_FF, E)
    if suffix.startswith("ffn_gate_inp") or suffix.startswith("exp_probs_b"):
        return (N_EMBD, E) if suffix.endswith(".weight") and "shexp" not in suffix else (E,)
    if suffix.endswith(".bias") or "norm" in suffix or "sinks" in suffix:
        return (N_EMBD,)
    return (N_EMBD, N_EMBD)


def write_layout(out: str | os.PathLike, arch: str) -> str:
    """Writes a shape-only GGUF whose tensor names follow `arch`'s layout."""
    b = GGUFBuilder()
    b.add(GENERAL.ARCHITECTURE, arch, GGUFValueType.STRING)
    for template, value in [(LLM.BLOCK_COUNT, N_LAYER), (LLM.EMBEDDING_LENGTH, N_EMBD),
                            (ATTENTION.HEAD_COUNT, 4), (LLM.EXPERT_COUNT, E), (LLM.EXPERT_USED_COUNT, 2),
                            (LLM.CONTEXT_LENGTH, 4096), (LLM.LEADING_DENSE_BLOCK_COUNT, DENSE_LEAD.get(arch, 0))]:
        b.add(key(template, arch), value, GGUFValueType.UINT32)
    b.add_tensor("token_embd.weight", (N_EMBD, 1000), GGMLQuantizationType.F16, None)
    for i in range(N_LAYER):
        names = LAYOUTS[arch]
        if i < DENSE_LEAD.get(arch, 0):
            names = [n for n in names if "exp" not in n and "gate_inp" not in n] + \
                ["ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"]
        for suffix in names:
            b.add_tensor(f"blk.{i}.{suffix}", _shape(suffix), GGMLQuantizationType.F32, None)
    b.add_tensor("output_norm.weight", (N_EMBD,), GGMLQuantizationType.F32, None)
    b.add_tensor("output.weight", (N_EMBD, 1000), GGMLQuantizationType.F16, None)
    b.write(out)
    return str(out)
