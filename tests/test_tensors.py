"""The tensor table read from a file: roles, layers, hyper-parameters and
summaries of the 16B-shaped model, equal to the table the planner tests use."""
from shimmy_py.gguf_io.tensors import read_table
from shimmy_py.synthetic.synth import tensor_table


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


def test_the_in_memory_table_equals_the_files(ds16b_path):
    """tests/unit plans on synth.tensor_table(); it is the file's table."""
    read, built = read_table(ds16b_path), tensor_table("deepseek-moe-16b")
    assert read.tensors == built.tensors and read.hparams == built.hparams
