"""The tensor table without a native build: names classified into roles and
layers, and the layouts of other MoE architectures (shape-only files)."""
import pytest
from synth_layouts import LAYOUTS, write_layout

from shimmy_py.gguf_io.tensors import classify, read_table


@pytest.mark.parametrize("name, layer, role", [
    ("token_embd.weight", None, "token_embd"),
    ("output.weight", None, "output"),
    ("output_norm.weight", None, "norm"),
    ("blk.3.attn_q.weight", 3, "attention"),
    ("blk.3.attn_norm.weight", 3, "norm"),
    ("blk.3.attn_q_norm.weight", 3, "norm"),
    ("blk.0.ffn_gate.weight", 0, "dense_ffn"),
    ("blk.12.ffn_gate_inp.weight", 12, "router"),
    ("blk.12.exp_probs_b.bias", 12, "router"),
    ("blk.12.ffn_gate_inp_shexp.weight", 12, "shared_experts"),
    ("blk.12.ffn_down_shexp.weight", 12, "shared_experts"),
    ("blk.12.ffn_up_exps.weight", 12, "routed_experts"),
    ("blk.12.ffn_gate_up_exps.weight", 12, "routed_experts"),
    ("blk.12.ffn_down_chexps.weight", 12, "routed_experts"),
    ("blk.12.ffn_down_exps.bias", 12, "routed_experts"),
    ("blk.2.mystery.weight", 2, "other"),
    ("rope_freqs.weight", None, "other"),
])
def test_classify(name, layer, role):
    assert classify(name) == (layer, role)


EXPECTED_ROLES = {
    "qwen2moe": {"attention", "norm", "router", "routed_experts", "shared_experts"},
    "qwen3moe": {"attention", "norm", "router", "routed_experts"},
    "llama": {"attention", "norm", "router", "routed_experts"},
    "gpt-oss": {"attention", "norm", "router", "routed_experts"},
    "deepseek2": {"attention", "norm", "router", "routed_experts", "shared_experts", "dense_ffn"},
}


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_moe_layouts_classify(arch, tmp_path):
    t = read_table(write_layout(tmp_path / f"{arch}.gguf", arch))
    layer_roles = {x.role for x in t.tensors if x.layer is not None}
    assert layer_roles == EXPECTED_ROLES[arch]
    exps = [x for x in t.tensors if x.role == "routed_experts"]
    assert exps and all("_exps" in x.name for x in exps)
    assert all(x.role == "routed_experts" for x in t.tensors if "_exps" in x.name)
    assert all(x.role == "shared_experts" for x in t.tensors if "shexp" in x.name)
    assert t.hparams.arch == arch and t.hparams.n_expert == 8
