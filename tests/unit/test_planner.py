"""The planner, a pure function: checked by hand computations on the real
DeepSeekMoE 16B shapes (the table built in memory, as synth would write it;
tests/test_tensors.py checks it equals the table read from the file)."""
import re

import pytest

from shimmy_py import PlacementError
from shimmy_py.placement.planner import (
    CPU,
    DeviceSpec,
    PlanRequest,
    anchored_patterns,
    plan,
)
from shimmy_py.synthetic.synth import tensor_table

GiB = 2**30
CPU_SPEC = DeviceSpec(CPU, "cpu", 128 * GiB, CPU)
GPU = DeviceSpec("GPU", "accelerator", 80 * GiB, "GPU")


@pytest.fixture(scope="module")
def table():
    return tensor_table("deepseek-moe-16b")


def hand_bytes(layers_moe=27):
    """F16 bytes from the published shapes, independently of the planner."""
    d, vocab, ff_dense, ff_exp, n_exp, shared = 2048, 102400, 10944, 1408, 64, 2
    attn = 4 * d * d * 2 + 2 * d * 4                     # q, k, v, o (F16) + two F32 norms
    dense = 3 * d * ff_dense * 2
    routed = 3 * d * ff_exp * n_exp * 2
    moe_rest = 3 * d * ff_exp * shared * 2 + d * n_exp * 4  # shared experts + F32 router
    embd = out = d * vocab * 2
    return dict(embd=embd, routed=layers_moe * routed,
                acc_all=28 * attn + dense + layers_moe * (routed + moe_rest) + out + d * 4)


def test_gpu_and_cpu_moe_match_the_model_card(table):
    hb = hand_bytes()
    gpu = plan(table, [CPU_SPEC, GPU], PlanRequest("gpu"))
    assert gpu.device("GPU").weights_bytes == hb["acc_all"]
    assert gpu.device(CPU).weights_bytes == hb["embd"]          # the token embedding stays on the CPU
    assert abs(gpu.device("GPU").weights_bytes / GiB - 30.1) < 0.05
    moe = plan(table, [CPU_SPEC, GPU], PlanRequest("cpu-moe"))
    assert moe.device("GPU").weights_bytes == hb["acc_all"] - hb["routed"]
    assert abs(moe.device("GPU").weights_bytes / GiB - 2.26) < 0.02
    routed_params = sum(t.bytes for t in moe.tensors if t.role == "routed_experts") // 2
    assert round(routed_params / 1e9, 2) == 14.95
    on_acc = {t.role for t in moe.tensors if t.device == "GPU"}
    assert on_acc == {"attention", "norm", "dense_ffn", "router", "shared_experts", "output"}


def test_n_cpu_moe_counts_layers_as_llama_cpp(table):
    p = plan(table, [CPU_SPEC, GPU], PlanRequest("n-cpu-moe", n_cpu_moe=8))
    on_cpu = {t.name for t in p.tensors if t.device == CPU and t.role != "token_embd"}
    # layer 0 is dense: it counts and moves nothing; layers 1..7 lose their experts
    assert on_cpu == {f"blk.{i}.ffn_{k}_exps.weight" for i in range(1, 8) for k in ("gate", "up", "down")}
    zero = plan(table, [CPU_SPEC, GPU], PlanRequest("n-cpu-moe", n_cpu_moe=0))
    assert zero.tensors == plan(table, [CPU_SPEC, GPU], PlanRequest("gpu")).tensors


@pytest.mark.parametrize("budget_gib", [4, 8, 16.3, 24])
def test_fit_fills_the_budget_and_goes_finer_than_layers(table, budget_gib):
    budget = int(budget_gib * GiB)
    p = plan(table, [CPU_SPEC, GPU], PlanRequest("fit", vram_budget=budget))
    acc = p.device("GPU")
    assert acc.total_bytes <= budget
    one_tensor = 2048 * 1408 * 64 * 2
    assert budget - acc.total_bytes < one_tensor       # nothing more would fit
    kept = [t for t in p.tensors if t.role == "routed_experts" and t.device == "GPU"]
    layers = sorted({t.layer for t in kept})
    assert layers == list(range(28 - len(layers), 28))  # the last layers keep their experts
    whole = [layer for layer in layers if sum(1 for t in kept if t.layer == layer) == 3]
    assert len(layers) - len(whole) <= 1               # at most one layer split


def test_fit_below_minimum_is_an_error(table):
    with pytest.raises(PlacementError, match="below the minimum that fits"):
        plan(table, [CPU_SPEC, GPU], PlanRequest("fit", vram_budget=2 * GiB))


def test_fit_without_budget_uses_capacity_less_margin(table):
    small = DeviceSpec("GPU", "accelerator", 12 * GiB, "GPU")
    p = plan(table, [CPU_SPEC, small], PlanRequest("fit"))
    assert p.device("GPU").total_bytes <= 12 * GiB - int(12 * GiB * 0.05)


def test_plans_are_deterministic(table):
    req = PlanRequest("fit", vram_budget=9 * GiB)
    assert plan(table, [CPU_SPEC, GPU], req) == plan(table, [CPU_SPEC, GPU], req)


@pytest.mark.parametrize("request_", [PlanRequest("cpu-moe"), PlanRequest("n-cpu-moe", n_cpu_moe=13),
                                      PlanRequest("fit", vram_budget=7 * GiB)])
def test_emitted_patterns_select_exactly_the_planned_tensors(table, request_):
    p = plan(table, [CPU_SPEC, GPU], request_)
    patterns = [re.compile(pat) for pat, _ in p.overrides]
    matched = {t.name for t in table.tensors if any(pat.search(t.name) for pat in patterns)}
    moved = {t.name for t in p.tensors if t.device == CPU and t.role != "token_embd"}
    assert matched == moved and moved
    for pat, _ in p.overrides:
        assert pat.startswith("^") and pat.endswith("$")


def test_anchoring_keeps_layer_1_from_matching_layer_11():
    [pat] = anchored_patterns({"blk.1.ffn_up_exps.weight"})
    assert re.search(pat, "blk.1.ffn_up_exps.weight")
    assert not re.search(pat, "blk.11.ffn_up_exps.weight")
    assert not re.search(pat, "blk.1.ffn_up_exps.weight.extra")


def test_user_overrides_come_first(table):
    req = PlanRequest("cpu-moe", overrides=((r"blk\.27\.ffn_down_exps", "GPU"), (r"attn_q", CPU)))
    p = plan(table, [CPU_SPEC, GPU], req)
    dev = {t.name: t.device for t in p.tensors}
    assert dev["blk.27.ffn_down_exps.weight"] == "GPU"
    assert dev["blk.27.ffn_up_exps.weight"] == CPU
    assert dev["blk.5.attn_q.weight"] == CPU
    assert p.overrides[:2] == req.overrides


@pytest.mark.parametrize("req, message", [
    (PlanRequest("n-cpu-moe", n_cpu_moe=29), "out of range"),
    (PlanRequest("n-cpu-moe", n_cpu_moe=-1), "out of range"),
    (PlanRequest("gpu", overrides=(("exps", "CUDA7"),)), "unknown buffer type 'CUDA7'; valid: CPU, GPU"),
    (PlanRequest("gpu", overrides=(("exps(", "CPU"),)), "malformed pattern"),
    (PlanRequest("gpu", overrides=(("a{99999999999}", "CPU"),)), "malformed pattern"),
    (PlanRequest("sideways"), "unknown strategy"),
])
def test_bad_requests(table, req, message):
    with pytest.raises(PlacementError, match=re.escape(message)):
        plan(table, [CPU_SPEC, GPU], req)


def test_no_accelerator_falls_back_to_cpu_with_a_notice(table):
    p = plan(table, [CPU_SPEC], PlanRequest("cpu-moe"))
    assert p.accelerator is None and p.overrides == ()
    assert {t.device for t in p.tensors} == {CPU}
    assert any("falls back to the CPU" in n for n in p.notices)


def test_layers_split_in_proportion_to_capacity():
    from shimmy_py.placement.planner import layer_split
    devs = [DeviceSpec(f"RPC{i}", "accelerator", c * GiB, f"RPC{i}") for i, c in enumerate((80, 256, 256, 256))]
    counts = layer_split(devs, 61)
    assert counts == [6, 18, 19, 19] and sum(counts) == 62        # 61 layers and the output
    assert layer_split(devs[:1], 27) == [28]
    assert layer_split([DeviceSpec("A", "accelerator", 0, "A"), DeviceSpec("B", "accelerator", 10, "B")], 3) == [0, 4]


def test_a_multi_device_plan_places_each_layer_on_its_slot(table):
    devs = [CPU_SPEC, DeviceSpec("RPC0", "accelerator", 20 * GiB, "RPC0"),
            DeviceSpec("RPC1", "accelerator", 60 * GiB, "RPC1")]
    p = plan(table, devs, PlanRequest("gpu"))
    assert p.accelerators == ("RPC0", "RPC1") and p.layer_split == (7, 22)
    dev = {t.name: t.device for t in p.tensors}
    assert [dev[f"blk.{i}.attn_q.weight"] for i in (0, 6, 7, 27)] == ["RPC0", "RPC0", "RPC1", "RPC1"]
    assert dev["output.weight"] == "RPC1" and dev["token_embd.weight"] == CPU
    assert p.device("RPC0").kv_bytes * 21 == p.device("RPC1").kv_bytes * 7     # KV goes with the layers
    assert p.network_bytes_per_token == 2 * 4 * 2048 + 4 * 102400              # CPU->RPC0->RPC1, logits home
    budget = 20 * GiB
    fit = plan(table, devs, PlanRequest("fit", vram_budget=budget))
    assert all(d.total_bytes <= budget for d in fit.devices if d.kind == "accelerator")
    kept = {t.device for t in fit.tensors if t.role == "routed_experts" and t.device != CPU}
    assert kept == {"RPC0", "RPC1"}                                             # each device keeps its own


def test_deepseek_v3_table():
    from shimmy_py.synthetic.shapes import deepseek_v3_table
    t = deepseek_v3_table()
    total = t.total()
    assert round(total.n_params / 1e9) == 671 and round(total.n_active / 1e9) == 38   # 671B, 37.6B active
    assert {x.role for x in t.tensors if x.layer == 0} == {"attention", "norm", "dense_ffn"}
    assert {x.role for x in t.tensors if x.layer == 3} == {"attention", "norm", "router", "routed_experts",
                                                           "shared_experts"}


def test_host_ram_is_counted(table):
    small_host = DeviceSpec(CPU, "cpu", 8 * GiB, CPU)
    gpu = DeviceSpec("GPU", "accelerator", 12 * GiB, "GPU")
    p = plan(table, [small_host, gpu], PlanRequest("cpu-moe"))
    assert any("host RAM" in n and "8.00 GiB available" in n and "stream from the file" in n for n in p.notices)
    assert p.tiers is not None                    # the experts RAM cannot hold stream (tests/unit/test_tiers.py)
    fit = plan(table, [small_host, gpu], PlanRequest("fit"))
    assert fit.tiers is not None and fit.tiers.streamed_bytes < p.tiers.streamed_bytes   # fit filled the GPU first
    gpu_only = DeviceSpec("GPU", "accelerator", 2 * GiB, "GPU")    # too small for the rest of the layers
    with pytest.raises(PlacementError, match="below the minimum that fits"):
        plan(table, [small_host, gpu_only], PlanRequest("fit"))


def test_a_plan_that_overflows_is_refused_before_loading(table):
    from shimmy_py.placement.machine import check_fits
    small = DeviceSpec("GPU", "accelerator", 8 * GiB, "GPU")
    p = plan(table, [CPU_SPEC, small], PlanRequest("gpu"))
    with pytest.raises(PlacementError, match="GPU would hold .* of its 8.00 GiB; try --cpu-moe"):
        check_fits(p, mapped_host=True)
    check_fits(plan(table, [CPU_SPEC, small], PlanRequest("cpu-moe")), mapped_host=False)


def _with_nextn_and_state(table):
    """The 16B table as if its last layer were a NextN block (GLM-4.5's files)
    and layers 0 and 1 recurrent (a hybrid's), state of 1000 values each."""
    from dataclasses import replace

    from shimmy_py.gguf_io.tensors import TensorTable
    hp = replace(table.hparams, n_layer_nextn=1, recurrent_layers=frozenset({0, 1}), state_values=1000)
    last = hp.n_layer - 1
    tensors = tuple(replace(t, role="mtp") if t.layer == last else t for t in table.tensors)
    return TensorTable(table.path, hp, tensors)


def test_a_nextn_block_is_nowhere_and_recurrent_state_is_per_sequence(table):
    t = _with_nextn_and_state(table)
    hp = t.hparams
    skipped = sum(x.nbytes for x in t.tensors if x.role == "mtp")
    p1 = plan(t, [CPU_SPEC, GPU], PlanRequest("gpu", n_ctx=4096))
    p4 = plan(t, [CPU_SPEC, GPU], PlanRequest("gpu", n_ctx=4096, n_seq=4))
    assert {x.device for x in p1.tensors if x.role == "mtp"} == {"not loaded"}
    assert p1.device("GPU").weights_bytes + p1.device(CPU).weights_bytes == t.nbytes - skipped
    attn_layer = hp.kv_layer_bytes(2, 4096)
    assert p1.device("GPU").kv_bytes == (hp.n_layer - 3) * attn_layer + 2 * 4000   # no cache for the NextN block
    assert p4.device("GPU").kv_bytes - p1.device("GPU").kv_bytes == 2 * 3 * 4000    # state per sequence
