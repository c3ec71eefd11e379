"""Real tensor tables of models too large to write, for planning: names and
shapes as llama.cpp's converter writes them, no weights.

  REAL presets (`shimmy-py synth OUT --preset NAME --shape-only`): a sparse
  BF16 file of the family's layout at the real model's sizes, then the types
  llama.cpp's quantizer gives each tensor (`llama-quantize --dry-run`,
  quant_mix.py), as the files people download are typed.

  qwen3-30b-a3b, qwen3-235b-a22b, mixtral-8x7b   Q4_K_M
  qwen3-next-80b-a3b   Q4_K_M; 36 gated delta-net layers with recurrent state
                and 12 attention layers; no multi-token-prediction block
  gpt-oss-20b, gpt-oss-120b    MXFP4 experts, the rest Q8_0 (llama-quantize
                MXFP4_MOE); the o200k vocabulary's 201,088 rows (the Llama 3
                tokenizer padded with unused tokens), no YaRN keys
  glm-4.5-air   Q4_K_M, 46 layers and the NextN block (not loaded); the
                Qwen2 tokenizer's 151,936 rows where GLM's has 151,552 (3 MB
                more in Q4_K_M)

  deepseek-v3   DeepSeek-V3 / R1 (671B), llama.cpp architecture deepseek2,
                Q4_K_M: MLA attention (attn_q_a/q_b, attn_kv_a_mqa,
                attn_k_b/attn_v_b), 3 leading dense layers, then 256 routed
                experts (8 active) and 1 shared expert per layer, sigmoid
                router with exp_probs_b; the DeepSeek LLM tokenizer padded to
                V3's 129,280 rows; no multi-token-prediction layer.

`deepseek_v3_table()` builds DeepSeek-V3's table in memory, with no file and
no build, in a "q4_k" mix: every matrix whose rows are whole K-quant blocks
(256 values) as Q4_K, the others as Q8_0, norms and router vectors as F32;
not llama.cpp's exact Q4_K_M (which keeps some tensors at Q6_K: the preset
above is that). The multi-host example plans it.
"""
from __future__ import annotations

from gguf import GGMLQuantizationType as T

from ..gguf_io.tensors import TensorTable


def _real():
    from .layouts import Shape
    return {
        "qwen3-30b-a3b": ("qwen3moe", Shape(n_embd=2048, n_layer=48, n_head=32, n_head_kv=4, head_dim=128,
                                            n_ff_exp=768, n_expert=128, n_expert_used=8, n_ctx_train=40960)),
        "qwen3-235b-a22b": ("qwen3moe", Shape(n_embd=4096, n_layer=94, n_head=64, n_head_kv=4, head_dim=128,
                                              n_ff_exp=1536, n_expert=128, n_expert_used=8, n_ctx_train=40960)),
        "mixtral-8x7b": ("mixtral", Shape(n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff_exp=14336,
                                          n_expert=8, n_expert_used=2, n_ctx_train=32768)),
        "gpt-oss-20b": ("gpt-oss", _gpt_oss(24, 32)),
        "gpt-oss-120b": ("gpt-oss", _gpt_oss(36, 128)),
        "qwen3-next-80b-a3b": ("qwen3next", Shape(n_embd=2048, n_layer=48, n_head=16, n_head_kv=2, head_dim=256,
                                                  n_ff_exp=512, n_ff_shexp=512, n_expert=512, n_expert_used=10,
                                                  ssm_state=128, ssm_groups=16, ssm_heads=32, attn_interval=4,
                                                  n_ctx_train=262144)),
        "deepseek-v3": ("deepseek2", Shape(n_embd=7168, n_layer=61, n_head=128, n_head_kv=128, n_ff=18432,
                                           n_ff_exp=2048, n_expert=256, n_expert_used=8, n_vocab=129280,
                                           n_ctx_train=163840, n_dense=3, mla=(1536, 512, 128, 64, 128))),
        "glm-4.5-air": ("glm4moe", Shape(n_embd=4096, n_layer=46, n_head=96, n_head_kv=8, head_dim=128,
                                         n_ff=10944, n_ff_exp=1408, n_expert=128, n_expert_used=8,
                                         n_ctx_train=131072)),
    }


def _gpt_oss(n_layer: int, n_expert: int):
    from .layouts import Shape
    return Shape(n_embd=2880, n_layer=n_layer, n_head=64, n_head_kv=8, head_dim=64, n_ff_exp=2880,
                 n_expert=n_expert, n_expert_used=4, n_vocab=201088, n_ctx_train=131072)


REAL = ("qwen3-30b-a3b", "qwen3-235b-a22b", "qwen3-next-80b-a3b", "mixtral-8x7b", "gpt-oss-20b", "gpt-oss-120b",
        "glm-4.5-air", "deepseek-v3")
# the mix people download: gpt-oss ships its experts in MXFP4 (llama-quantize's MXFP4_MOE: the
# rest Q8_0, as ggml-org's gpt-oss GGUFs); the others most often as Q4_K_M
DEFAULT_QUANT = {"gpt-oss-20b": "MXFP4_MOE", "gpt-oss-120b": "MXFP4_MOE"}


def write_real(out, name: str, quant: str | None = None):
    """A shape-only file of the real model `name`, typed as llama-quantize's
    `quant` types it (default: the mix people download, DEFAULT_QUANT or
    Q4_K_M; "BF16": as converted, unquantized)."""
    from pathlib import Path

    from . import families, quant_mix
    family, shape = _real()[name]
    quant = quant or DEFAULT_QUANT.get(name, "Q4_K_M")
    out = Path(out)
    bf16 = out.with_name(out.name + ".bf16.tmp") if quant.upper() != "BF16" else out
    families.write(bf16, family, shape=shape, shape_only=True, dtype=T.BF16)
    if quant.upper() == "BF16":
        return out
    try:
        return quant_mix.write_shape_only(bf16, out, quant.upper())
    finally:
        bf16.unlink(missing_ok=True)


def _q4_k_type(name: str, shape: tuple[int, ...]) -> T:
    if len(shape) == 1 or "norm" in name or "ffn_gate_inp" in name or name.endswith(".bias"):
        return T.F32
    return T.Q4_K if shape[0] % 256 == 0 else T.Q8_0


def deepseek_v3_table() -> TensorTable:
    """DeepSeek-V3's tensor table in the "q4_k" mix (path "<deepseek-v3>"),
    built in memory through the reader: no file and no build needed (the
    multi-host example)."""
    from . import families
    family, shape = _real()["deepseek-v3"]
    return families.table(family, shape, path="<deepseek-v3>", type_of=_q4_k_type)
