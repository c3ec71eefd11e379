"""The tensor table: roles, layers, hyper-parameters and summaries."""
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


def test_deepseek_moe_16b_table(ds16b_path):
    t = read_table(ds16b_path)
    hp = t.hparams
    assert (hp.arch, hp.n_layer, hp.n_embd, hp.n_head, hp.n_expert, hp.n_expert_used, hp.n_expert_shared,
            hp.n_layer_dense_lead, hp.n_vocab) == ("deepseek", 28, 2048, 16, 64, 6, 2, 1, 102400)
    roles = t.by_role()
    # by hand: 27 MoE layers x 3 matrices x 2048 x 1408 x 64 experts
    assert roles["routed_experts"].n_params == 27 * 3 * 2048 * 1408 * 64 == 14_948_499_456
    assert roles["routed_experts"].n_active == 27 * 3 * 2048 * 1408 * 6
    assert roles["shared_experts"].n_params == 27 * 3 * 2048 * 2816
    assert roles["dense_ffn"].n_params == 3 * 2048 * 10944
    assert roles["attention"].n_params == 28 * 4 * 2048 * 2048
    total = t.total()
    assert total.nbytes == sum(x.nbytes for x in t.tensors)
    assert abs(total.nbytes / 1e9 - 32.8) < 0.1          # the model card's 32.8 GB
    assert abs(total.n_active / 1e9 - 2.8) < 0.05        # and its 2.8B active parameters
    layers = t.by_layer()
    assert set(layers) == {None, *range(28)}
    assert layers[0].nbytes < layers[1].nbytes            # the dense layer holds no experts


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
