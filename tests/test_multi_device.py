"""Plans across several devices, loaded for real: three llama.cpp RPC servers
on loopback (one planned for less with device_capacity) beside the local CPU.
The layers split as planned, llama.cpp's buffers per device match the plan,
and the greedy tokens equal an all-CPU run."""
import pytest
from support.rpc import RPCServer

from shimmy_py import Model, PlacementOptions, make_plan
from shimmy_py.placement.plan import server_args

PROMPT = "Explain the architecture of DeepSeek MoE"


@pytest.fixture(scope="module")
def servers():
    with RPCServer() as a, RPCServer() as b, RPCServer() as c:
        yield [a.endpoint, b.endpoint, c.endpoint]


@pytest.fixture(scope="module")
def cpu_tokens(tiny_path):
    with Model(tiny_path, n_ctx=256, n_threads=2) as m:
        return m.generate(PROMPT, max_tokens=12, temperature=0).tokens


def names_of(plan):
    return {t.name: t.device for t in plan.tensors}


def test_three_servers_split_the_layers_and_generate_the_cpu_tokens(tiny_path, servers, cpu_tokens):
    plan = make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256))
    assert len(plan.accelerators) == 3 and sum(plan.layer_split) == 4     # 3 layers and the output
    devices = names_of(plan)
    layer_dev = [devices[f"blk.{i}.attn_q.weight"] for i in range(3)]
    assert len(set(layer_dev)) == 3 and devices["output.weight"] == plan.accelerators[-1]
    with Model(tiny_path, n_ctx=256, n_threads=2, rpc=servers) as m:
        report = m.placement_report()
        assert report.ok, str(report)
        assert set(report.actual) == {"CPU", *plan.accelerators}
        assert m.generate(PROMPT, max_tokens=12, temperature=0).tokens == cpu_tokens


def test_a_device_planned_for_less_gets_fewer_layers_and_fit_spills_experts(tiny_path, servers, cpu_tokens):
    base = make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256))
    small = base.accelerators[0]
    routed = sum(t.bytes for t in base.tensors if t.role == "routed_experts")
    capacity = {small: 1}          # next to nothing: no layer goes there
    plan = make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256,
                                                 device_capacity=tuple(capacity.items())))
    assert plan.layer_split[0] == 0 and small not in set(names_of(plan).values())
    # fit with a budget that holds each device's layers but half the experts
    budget = max(d.total_bytes for d in base.devices if d.kind == "accelerator") - routed // 4
    fit = make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256, fit=True, vram_budget=budget))
    on_cpu = [t for t in fit.tensors if t.role == "routed_experts" and t.device == "CPU"]
    assert 0 < len(on_cpu) < 6
    for d in fit.devices:
        if d.kind == "accelerator":
            assert d.total_bytes <= budget
    with Model(tiny_path, n_ctx=256, n_threads=2, placement=fit, rpc=servers) as m:
        assert m.placement_report().ok, str(m.placement_report())
        assert m.generate(PROMPT, max_tokens=12, temperature=0).tokens == cpu_tokens


def test_the_plan_says_what_crosses_the_network(tiny_path, servers):
    spread = make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256))
    moe = make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256, cpu_moe=True))
    width, logits = 4 * 64, 4 * 102400     # one F32 hidden state of the tiny model, its logits
    assert spread.layer_split == (1, 1, 2)
    assert spread.network_bytes_per_token == 3 * width + logits       # CPU -> RPC0 -> RPC1 -> RPC2 -> home
    assert moe.network_bytes_per_token == 3 * width + 2 * 2 * width + logits   # 2 MoE layers' experts at home
    args = server_args(spread)
    assert args[args.index("-ts") + 1] == "1,1,2" and args[args.index("--device") + 1] == ",".join(spread.accelerators)


def test_a_server_that_went_away_is_named(tiny_path):
    """Registered, then gone: the next plan or load names it instead of
    leaving it out, and llama.cpp is never asked (it aborts on a lost server)."""
    from shimmy_py import PlacementError
    with RPCServer() as gone:
        endpoint = gone.endpoint
        assert make_plan(tiny_path, PlacementOptions(rpc=(endpoint,), n_ctx=256)).accelerators
    with pytest.raises(PlacementError, match=f"RPC server {endpoint} is unreachable"):
        make_plan(tiny_path, PlacementOptions(rpc=(endpoint,), n_ctx=256))
    with Model(tiny_path, n_ctx=256, n_threads=2) as m:          # CPU-only loads never ask it
        assert m.generate(PROMPT, max_tokens=2, temperature=0).completion_tokens == 2


def test_a_server_lost_while_serving_fails_clearly_and_the_server_lives(tiny_path):
    """llama.cpp aborts the process that loses an RPC server mid-run: here that
    is the model worker; the request fails with the signal, the restart fails
    naming the host, and the HTTP server answers throughout."""
    import time

    from support.http import post_json
    from support.servers import config, options

    from shimmy_py.serving.server import Server
    rpc = RPCServer()
    cfg = config(tiny_path, ctx=256, parallel=1,
                      model=options(cpu_moe=True, rpc=(rpc.endpoint,)))
    with Server(cfg).start() as srv:
        assert post_json(srv.url, "/api/generate", {"prompt": "Hi", "max_tokens": 2, "stream": False})[0] == 200
        rpc.stop()
        status, body = post_json(srv.url, "/api/generate", {"prompt": "Hi", "max_tokens": 50, "stream": False})
        assert status == 503, body
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, health = post_json(srv.url, "/health", None)
            if health.get("error"):
                break
            time.sleep(0.2)
        assert status == 503 and f"RPC server {rpc.endpoint} is unreachable" in health["error"]
        assert health["restarts"] >= 1


def test_a_worker_comes_back_when_its_server_does(tiny_path):
    """Recoverable: once the lost RPC server answers again (here: a new one
    on the same port), the next request restarts the worker and is served."""
    import time

    from support.http import post_json
    from support.servers import config, options

    from shimmy_py.serving.server import Server
    rpc = RPCServer()
    cfg = config(tiny_path, ctx=256, parallel=1,
                      model=options(cpu_moe=True, rpc=(rpc.endpoint,)))
    with Server(cfg).start() as srv:
        rpc.stop()
        post_json(srv.url, "/api/generate", {"prompt": "Hi", "max_tokens": 50, "stream": False})
        deadline = time.monotonic() + 60
        while not post_json(srv.url, "/health", None)[1].get("error") and time.monotonic() < deadline:
            time.sleep(0.2)
        again = RPCServer(port=rpc.port)
        try:
            status, body = post_json(srv.url, "/api/generate", {"prompt": "Hi", "max_tokens": 2, "stream": False})
            assert status == 200, body
            assert post_json(srv.url, "/health", None)[0] == 200
        finally:
            again.stop()


def test_routed_experts_spill_across_hosts_by_capacity(tiny_path, servers, cpu_tokens):
    """One server stands for a GPU, two for other hosts' RAM (host_ram): the
    layers stay on the accelerator, the routed experts that leave it spread
    over the local CPU and the hosts by capacity, and llama.cpp places and
    computes them there, with the CPU run's tokens."""
    gpu, *ram = servers
    options = PlacementOptions(rpc=(gpu,), host_ram=tuple(ram), n_ctx=256, cpu_moe=True,
                               device_capacity=(("CPU", 1),))      # no room at home: all of it goes out
    plan = make_plan(tiny_path, options)
    kinds = {d.name: d.kind for d in plan.devices}
    assert sorted(kinds.values()) == ["accelerator", "cpu", "host", "host"]
    assert plan.layer_split[1:] == (0, 0)                           # no layer on a host
    experts = {t.device for t in plan.tensors if t.role == "routed_experts"}
    hosts = {n for n, k in kinds.items() if k == "host"}
    assert experts == hosts                                         # two MoE layers, one per host
    assert plan.network_bytes_per_token > 0
    with Model(tiny_path, n_ctx=256, n_threads=2, placement=plan, rpc=[gpu], host_ram=ram) as m:
        report = m.placement_report()
        assert report.ok, str(report)
        assert {d for d in report.actual} >= hosts
        assert m.generate(PROMPT, max_tokens=12, temperature=0).tokens == cpu_tokens


def test_a_plan_made_in_another_process_loads_on_the_same_servers(tiny_path, servers, tmp_path):
    """ggml names RPC devices in the order a process registered their servers:
    this process has all three (the last is RPC2 here), a worker that
    registers only the last calls it RPC0. A plan made here and loaded there
    finds its devices by their buffer types, which name the endpoint (the
    server's re-plan for a worker failed with "no device named RPC1")."""
    import pickle
    import subprocess
    import sys
    make_plan(tiny_path, PlacementOptions(rpc=tuple(servers), n_ctx=256))         # all three registered here
    plan = make_plan(tiny_path, PlacementOptions(rpc=(servers[2],), n_ctx=256, cpu_moe=True))
    assert plan.accelerators != ("RPC0",)
    (tmp_path / "plan.pkl").write_bytes(pickle.dumps(plan))
    child = f"""
import pickle
from shimmy_py import Model
plan = pickle.load(open({str(tmp_path / "plan.pkl")!r}, "rb"))
with Model({str(tiny_path)!r}, n_ctx=256, n_threads=2, placement=plan, rpc=[{servers[2]!r}]) as m:
    assert m.placement_report().ok
    print("loaded", m.generate("Hi", max_tokens=3, temperature=0).completion_tokens)
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "loaded 3", proc.stderr[-1500:]
