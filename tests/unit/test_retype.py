"""Smaller files for the memory a machine has, as pure functions: the type
llama-quantize gives each tensor (its fallback where a row is not a whole
number of K blocks: DeepSeekMoE 16B's ffn_down_exps rows are 1408 wide, so
Q4_K falls back to Q5_0 and Q6_K to Q8_0 there), the bytes that follow,
and the proposals `plan` prints when a plan streams, planned through the
planner itself on DeepSeekMoE 16B's real shapes (F16, 30.5 GiB)."""
import pytest

from shimmy_py import PlacementError
from shimmy_py.placement.planner import CPU, DeviceSpec, PlanRequest, plan
from shimmy_py.placement.predict import Prediction, predict
from shimmy_py.placement.proposals import lines, propose, to_json
from shimmy_py.placement.retype import (
    Retyping,
    layer_spans,
    parse_layers,
    requantized,
    retyped,
    row_type,
    target_types,
)
from shimmy_py.synthetic.synth import tensor_table

GiB = 2**30
HOST = DeviceSpec(CPU, "cpu", 256 * GiB, CPU)
ACC = DeviceSpec("CUDA0", "accelerator", 16 * GiB, "CUDA0")
BUDGET = 20 * GiB


@pytest.fixture(scope="module")
def table():
    return tensor_table("deepseek-moe-16b")


def planner(devices, budget=BUDGET, strategy="gpu", n_cpu_moe=0):
    return lambda t: plan(t, devices, PlanRequest(strategy=strategy, n_cpu_moe=n_cpu_moe, n_ctx=4096,
                                                  ram_budget=budget))


def test_each_tensor_gets_the_type_llama_quantize_would_give_it(table):
    gate = next(t for t in table.tensors if t.name == "blk.1.ffn_gate_exps.weight")
    down = next(t for t in table.tensors if t.name == "blk.1.ffn_down_exps.weight")
    assert (row_type(gate, "Q4_K"), row_type(down, "Q4_K")) == ("Q4_K", "Q5_0")
    assert (row_type(gate, "Q6_K"), row_type(down, "Q6_K")) == ("Q6_K", "Q8_0")
    assert row_type(down, "Q8_0") == "Q8_0"
    types = target_types(table, Retyping("Q8_0"))
    for t in table.tensors:
        assert types[t.name] == ("Q8_0" if t.role == "routed_experts" else t.ggml_type), t.name
    rt = retyped(table, types)
    q8 = next(t for t in rt.tensors if t.name == gate.name)
    assert q8.nbytes == 2048 // 32 * 34 * 1408 * 64              # blocks of 32 values in 34 bytes, per row
    assert rt.nbytes < table.nbytes and len(rt.tensors) == len(table.tensors)


def test_host_weights_change_and_what_an_accelerator_holds_is_kept(table):
    on_acc = frozenset(t.name for t in table.tensors if t.layer == 3)
    types = target_types(table, Retyping("Q4_K", experts_only=False), on_acc)
    for t in table.tensors:
        if t.name in on_acc or t.name.endswith("norm.weight") or "ffn_gate_inp" in t.name:
            assert types[t.name] == t.ggml_type, t.name
    assert types["blk.0.attn_q.weight"] == "Q4_K" and types["token_embd.weight"] == "Q4_K"
    some = target_types(table, Retyping("Q8_0", layers=frozenset({1, 2})))
    changed = {n for n, k in some.items() if k != next(t.ggml_type for t in table.tensors if t.name == n)}
    assert changed == {f"blk.{i}.ffn_{m}_exps.weight" for i in (1, 2) for m in ("gate", "up", "down")}
    quantized = retyped(table, types)
    assert requantized(quantized, target_types(quantized, Retyping("Q8_0"))) != []
    assert requantized(table, types) == []


def test_layer_lists_read_and_write_back_and_a_bad_one_is_named():
    assert parse_layers("1-3,7, 9-10") == {1, 2, 3, 7, 9, 10}
    assert layer_spans({1, 2, 3, 7, 9, 10}) == "1-3,7,9-10"
    for bad in ("3-1", "x", "1-", "-2"):
        with pytest.raises(PlacementError, match="--layers"):
            parse_layers(bad)
    with pytest.raises(PlacementError, match="Q3_K"):
        Retyping("Q3_K")
    assert Retyping("Q8_0", layers=frozenset({1, 2, 3})).args() == ["--type", "Q8_0", "--experts-only",
                                                                      "--layers", "1-3"]


def test_a_streaming_plan_is_offered_the_files_that_fit_and_the_fewest_layers(table):
    of = planner([HOST])
    base = of(table)
    assert base.tiers is not None
    found = propose(table, of, base)
    assert [p.retyping.type for p in found] == ["Q8_0", "Q8_0", "Q6_K", "Q4_K"]
    partial, whole = found[0], found[1]
    assert partial.retyping.layers is not None and whole.retyping.layers is None
    assert all(p.plan.tiers is None and p.file_bytes < table.nbytes for p in found)
    n = len(partial.retyping.layers)                   # the fewest: one layer fewer still streams
    layers = sorted(partial.retyping.layers)
    assert layers == list(range(1, n + 1))
    fewer = retyped(table, target_types(table, Retyping("Q8_0", layers=frozenset(layers[:-1]))))
    assert of(fewer).tiers is not None
    text = "\n".join(lines(found, "ds16b.gguf"))
    assert "lossy" in text and "shimmy-py quantize ds16b.gguf OUT.gguf --type Q8_0 --experts-only" in text
    assert to_json(found)[1]["quantize_args"] == ["--type", "Q8_0", "--experts-only"]


def test_with_a_profile_only_what_is_predicted_faster_is_offered(table):
    from test_tiers import PROFILE
    of = planner([HOST])
    base = of(table)
    current = predict(base, table, PROFILE)
    found = propose(table, of, base, PROFILE, current=current)
    assert found and all(p.prediction.decode_tps > current.decode_tps for p in found)
    faster_than_all = Prediction(1e9, 1e9, 0, 0.0, {}, False)
    assert propose(table, of, base, PROFILE, current=faster_than_all) == []
    assert propose(table, of, planner([HOST], budget=None)(table)) == []       # nothing streams: nothing proposed


def test_experts_an_accelerator_holds_stay_as_they_are(table):
    of = planner([ACC, HOST], budget=12 * GiB, strategy="n-cpu-moe", n_cpu_moe=20)   # 7 layers' experts on CUDA0
    base = of(table)
    found = propose(table, of, base)
    assert found
    held = {p.name: p.bytes for p in base.tensors if p.device != CPU}
    assert any(p.role == "routed_experts" for p in base.tensors if p.name in held)
    for proposal in found:                 # what the accelerator holds is the same size in every proposal's plan
        assert {p.name: p.bytes for p in proposal.plan.tensors if p.name in held} == held
