"""Loading with a plan, for real: llama.cpp's ggml-rpc-server on 127.0.0.1 is
the accelerator, and llama.cpp's own account of its buffers is checked."""
import json
import subprocess
import sys

import numpy as np
import pytest

from shimmy_py import (
    Model,
    PlacementError,
    PlacementOptions,
    make_plan,
    simulate_placement,
)

PROMPT = "Explain the architecture of DeepSeek MoE"


@pytest.fixture(scope="module")
def cpu_only(tiny_path):
    with Model(tiny_path, n_ctx=256, n_threads=2) as m:
        yield m.generate(PROMPT, max_tokens=12, temperature=0), m.eval_logits(m.tokenize(PROMPT))


def check_against_cpu(m, cpu_only):
    ref, ref_logits = cpu_only
    out = m.generate(PROMPT, max_tokens=12, temperature=0)
    assert out.tokens == ref.tokens
    # same ops on another backend: equal within float32 reassociation
    assert np.abs(m.eval_logits(m.tokenize(PROMPT)) - ref_logits).max() < 1e-3


def test_cpu_moe_on_the_rpc_device(tiny_path, rpc, cpu_only):
    with Model(tiny_path, n_ctx=256, n_threads=2, cpu_moe=True, rpc=[rpc]) as m:
        acc = m.plan.accelerator
        assert acc.startswith("RPC")
        roles = {t.role: set() for t in m.plan.tensors}
        for t in m.plan.tensors:
            roles[t.role].add(t.device)
        assert roles["routed_experts"] == {"CPU"} and roles["token_embd"] == {"CPU"}
        for role in ("attention", "shared_experts", "router", "dense_ffn", "output", "norm"):
            assert roles[role] == {acc}, role
        report = m.placement_report()
        assert report.ok, str(report)
        assert set(report.actual) == {"CPU", acc}
        check_against_cpu(m, cpu_only)


def test_n_cpu_moe_moves_exactly_the_first_layers(tiny_path, rpc, cpu_only):
    with Model(tiny_path, n_ctx=256, n_threads=2, n_cpu_moe=2, rpc=[rpc]) as m:
        report = m.placement_report()
        assert report.ok, str(report)
        moved = {n for n, b in report.overridden.items() if b.startswith("CPU")}
        assert moved == {f"blk.1.ffn_{k}_exps.weight" for k in ("gate", "up", "down")}
        check_against_cpu(m, cpu_only)


def test_fit_under_a_budget_loads_and_stays_within_it(tiny_path, rpc, cpu_only):
    floor = make_plan(tiny_path, PlacementOptions(cpu_moe=True, rpc=(rpc,), n_ctx=256))
    routed = sum(t.bytes for t in floor.tensors if t.role == "routed_experts")
    budget = floor.device(floor.accelerator).total_bytes + routed // 2
    with Model(tiny_path, n_ctx=256, n_threads=2, fit=True, vram_budget=budget, rpc=[rpc]) as m:
        acc = m.plan.device(m.plan.accelerator)
        kept = [t for t in m.plan.tensors if t.role == "routed_experts" and t.device == acc.name]
        assert 0 < len(kept) < 6 and acc.total_bytes <= budget
        report = m.placement_report()
        assert report.ok, str(report)
        assert report.allocated[acc.name] <= budget   # llama.cpp's weights + KV + compute buffers
        check_against_cpu(m, cpu_only)


@pytest.mark.parametrize("options", [dict(cpu_moe=True), dict(n_cpu_moe=9),
                                     dict(fit=True, vram_budget="8GiB")])
def test_llama_cpp_selects_exactly_the_planned_tensors_of_the_16b_table(ds16b_path, rpc, options):
    # planned for a host with 64 GiB of RAM: the 16B model's experts do not fit this machine's 24
    plan = make_plan(ds16b_path, PlacementOptions(rpc=(rpc,), device_capacity=(("CPU", "64GiB"),), **options))
    report = simulate_placement(ds16b_path, plan)   # llama.cpp's loader, no allocation
    assert report.ok, report.problems
    assert len(report.overridden) == sum(1 for t in plan.tensors if t.device == "CPU" and t.role != "token_embd")


def test_unreachable_rpc_server_is_a_clear_error(tiny_path):
    from shimmy_py.procs import free_port
    with pytest.raises(PlacementError, match="unreachable"):
        Model(tiny_path, cpu_moe=True, rpc=[f"127.0.0.1:{free_port()}"])


def test_hypothetical_plans_cannot_load(tiny_path):
    plan = make_plan(tiny_path, PlacementOptions(cpu_moe=True, target_vram="24GB"))
    with pytest.raises(PlacementError, match="hypothetical"):
        Model(tiny_path, placement=plan)


def test_cli_plan_json_for_a_24gb_card(ds16b_path):
    p = subprocess.run([sys.executable, "-m", "shimmy_py", "plan", str(ds16b_path), "--target-vram", "80GiB",
                        "--cpu-moe", "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    acc = next(d for d in out["devices"] if d["type"] == "accelerator")
    assert round(acc["weights_bytes"] / 2**30, 2) == 2.27 and acc["capacity_bytes"] == 80 * 2**30
    assert {"name", "type", "weights_bytes", "kv_bytes", "reserve_bytes", "capacity_bytes"} <= set(acc)
    t = out["tensors"][0]
    assert {"name", "role", "layer", "bytes", "device"} <= set(t) <= {"name", "role", "layer", "bytes", "device",
                                                                      "tier", "resident_experts"}   # when RAM is short
    assert "-ot" in out["llama_server_args"]


def test_cli_devices_lists_the_rpc_device(rpc):
    p = subprocess.run([sys.executable, "-m", "shimmy_py", "devices", "--rpc", rpc, "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    devs = json.loads(p.stdout)["devices"]
    assert [d["kind"] for d in devs] == ["cpu", "accelerator"]
    assert devs[1]["description"] == rpc


def test_an_override_std_regex_refuses_is_refused_before_loading(tiny_path):
    """Python's re takes lookbehind; llama.cpp's std::regex (ECMAScript) throws
    inside its loader. The pattern is checked with std::regex itself first."""
    with pytest.raises(PlacementError, match=r"std::regex .*refuses"):
        make_plan(tiny_path, PlacementOptions(overrides=(r"(?<=blk\.1\.)ffn_up_exps=CPU",)))
    make_plan(tiny_path, PlacementOptions(overrides=(r"blk\.1\.ffn_up_exps=CPU",)))   # a valid one passes
