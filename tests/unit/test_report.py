"""The placement report: llama.cpp's log lines read back and compared with a Plan."""
from shimmy_py.placement.plan import CPU, DeviceSpec, PlanRequest
from shimmy_py.placement.planner import plan
from shimmy_py.placement.report import build_report, device_of_buffer
from shimmy_py.synthetic.synth import tensor_table

MiB = 2**20


def tiny_plan():
    devices = [DeviceSpec(CPU, "cpu", 2**34, CPU), DeviceSpec("RPC0", "accelerator", 2**33, "RPC0[127.0.0.1:1]")]
    return plan(tensor_table("tiny"), devices, PlanRequest("cpu-moe", n_ctx=256))


def log_for(p, cpu_extra=0, moved=None):
    """The lines llama.cpp logs for a load placed as `p` (sizes in MiB, 2 decimals)."""
    by_dev = p.weights_by_device()
    moved = moved if moved is not None else [t.name for t in p.tensors if t.device == CPU and t.role != "token_embd"]
    lines = [f"llama_model_loader: tensor {n} (f32) buffer type overridden to CPU" for n in moved]
    lines += [f"load_tensors:          CPU model buffer size = {(by_dev[CPU] + cpu_extra) / MiB:.2f} MiB",
              f"load_tensors: RPC0[127.0.0.1:1] model buffer size = {by_dev['RPC0'] / MiB:.2f} MiB",
              "llama_kv_cache: RPC0[127.0.0.1:1] KV buffer size =     1.50 MiB",
              "llama_context: RPC0[127.0.0.1:1] compute buffer size =    10.25 MiB"]
    return lines


def test_device_of_buffer():
    assert [device_of_buffer(b) for b in ("CPU", "CPU_Mapped", "CPU_REPACK", "CUDA_Host", "CUDA0",
                                          "RPC0[127.0.0.1:1]")] == [CPU, CPU, CPU, CPU, "CUDA0", "RPC0"]


def test_a_load_as_planned_is_ok():
    p = tiny_plan()
    r = build_report(p, log_for(p))
    assert r.ok, r.problems
    assert r.actual[CPU] == round(round(p.weights_by_device()[CPU] / MiB, 2) * MiB)
    assert r.allocated["RPC0"] == r.actual["RPC0"] + round(11.75 * MiB)
    assert set(r.overridden) == {t.name for t in p.tensors if t.role == "routed_experts"}


def test_a_size_or_an_override_off_plan_is_reported():
    p = tiny_plan()
    r = build_report(p, log_for(p, cpu_extra=4 * MiB))
    assert not r.ok and "CPU: planned" in r.problems[0]
    moved = [t.name for t in p.tensors if t.role == "routed_experts"][1:]
    r = build_report(p, log_for(p, moved=moved))
    assert not r.ok and "missed" in r.problems[0]
