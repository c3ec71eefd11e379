"""The third tier and the cost model, pure functions: DeepSeekMoE 16B's real
shapes (F16, 32.8 GB) planned for host RAM budgets smaller than the model,
checked by hand computations; the prediction's arithmetic on a stated
machine profile."""
import numpy as np
import pytest

from shimmy_py import PlacementError
from shimmy_py.placement.plan import to_json, to_text
from shimmy_py.placement.planner import CPU, DeviceSpec, PlanRequest, plan
from shimmy_py.placement.predict import predict, read_per_token
from shimmy_py.placement.tiers import ExpertProfile
from shimmy_py.synthetic.synth import tensor_table

GiB, MiB = 2**30, 2**20
HOST = DeviceSpec(CPU, "cpu", 256 * GiB, CPU)
READS = {f"{s}x8": r for s, r in ((4096, 0.1e9), (1 << 20, 1e9), (8 << 20, 2e9))}
PROFILE = {"version": 3, "threads": 2, "ram_read_bps": {"2": 20e9}, "decode_read_bps": {"1": 6e9, "2": 10e9},
           "file_read_bps": READS, "file_cached_read_bps": READS, "layer_overhead_s": {"1": 2e-4, "2": 1e-4},
           "prefill_flops": {"2": 1e11}}


@pytest.fixture(scope="module")
def table():
    return tensor_table("deepseek-moe-16b")


def host_plan(table, budget, profile=None):
    return plan(table, [HOST], PlanRequest(n_ctx=4096, ram_budget=budget, expert_profile=profile))


def test_a_plan_that_fits_its_budget_has_no_tiers(table):
    assert host_plan(table, 64 * GiB).tiers is None
    assert host_plan(table, None).tiers is None          # 256 GiB of RAM, less fit's margin


def test_resident_is_what_every_token_reads_and_the_experts_stream(table):
    p = host_plan(table, 16 * GiB)
    t = p.tiers
    whole = [x for x in p.tensors if x.role not in ("routed_experts", "token_embd")]
    assert t.resident == {x.name for x in whole}
    assert t.resident_bytes == sum(x.bytes for x in whole)
    experts = sum(x.bytes for x in p.tensors if x.role == "routed_experts")
    embd = next(x.bytes for x in p.tensors if x.role == "token_embd")
    assert t.streamed_bytes == experts + embd
    kv = table.hparams.kv_bytes(4096)
    compute = 4 * 512 * 8 * 2048 + 4 * 102400     # the CPU runs the graph: a ubatch's activations, a logits row
    assert p.device(CPU).reserve_bytes == compute
    assert t.cache_bytes == 16 * GiB - t.resident_bytes - kv - compute
    # uniform routing: the cache keeps its share of each layer's experts, the rest misses
    slice_bytes = 3 * 2048 * 1408 * 2
    cached = t.cache_bytes // slice_bytes
    assert sum(layer.cached_experts for layer in t.layers) == cached
    assert t.miss_rate == pytest.approx(1 - cached / (27 * 64), abs=1e-9)
    assert t.file_bytes_per_token == pytest.approx(27 * 6 * slice_bytes * t.miss_rate, rel=1e-9)


def test_the_json_marks_each_host_tensors_tier_and_the_text_says_the_figures(table):
    p = host_plan(table, 16 * GiB)
    tiers = {x["name"]: x.get("tier") for x in to_json(p)["tensors"]}
    assert tiers["blk.1.ffn_gate_exps.weight"] == "stream" and tiers["blk.1.attn_q.weight"] == "resident"
    assert tiers["token_embd.weight"] == "stream" and tiers["output.weight"] == "resident"
    assert to_json(p)["tiers"]["file_bytes_per_token"] == round(p.tiers.file_bytes_per_token)
    text = to_text(p)
    assert "host RAM is short" in text and "expected from the file per token" in text


def test_a_budget_below_what_every_token_reads_is_an_error_naming_the_numbers(table):
    with pytest.raises(PlacementError, match=r"cannot hold even what every token reads: .* budget of 2.00 GiB"):
        host_plan(table, 2 * GiB)


def test_a_profile_keeps_the_most_routed_experts_resident(table):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 10, size=(27, 64))
    counts[:, 7] = 1000                                   # expert 7 of every layer is chosen most
    profile = ExpertProfile(tuple(range(1, 28)), tuple(tuple(int(c) for c in row) for row in counts))
    uniform, profiled = host_plan(table, 16 * GiB), host_plan(table, 16 * GiB, profile)
    t = profiled.tiers
    assert all(7 in layer.resident_experts for layer in t.layers)
    assert t.resident_bytes > uniform.tiers.resident_bytes
    assert t.miss_rate < uniform.tiers.miss_rate
    entry = next(x for x in to_json(profiled)["tensors"] if x["name"] == "blk.3.ffn_up_exps.weight")
    assert 7 in entry["resident_experts"]


def test_an_expert_a_short_trace_never_saw_may_still_be_chosen(table):
    """Add-one shares: a profile where half the experts never appear still
    expects reads of them, fewer the longer the trace (the same skew, more
    routings), and the counts rank the resident experts as before."""
    def profile(scale):
        counts = np.zeros((27, 64), dtype=np.int64)
        counts[:, :32] = scale                                # experts 32-63 of every layer never seen
        return ExpertProfile(tuple(range(1, 28)), tuple(tuple(int(c) for c in row) for row in counts))
    assert profile(3).shares(1, 64)[40] == pytest.approx(1 / (32 * 3 + 64))
    short, long = host_plan(table, 16 * GiB, profile(3)).tiers, host_plan(table, 16 * GiB, profile(300)).tiers
    assert short.file_bytes_per_token > long.file_bytes_per_token > 0
    assert all(set(layer.resident_experts) <= set(range(32)) or len(layer.resident_experts) > 32
               for layer in long.layers)


def test_a_profile_of_another_model_is_refused(table):
    profile = ExpertProfile((1,), (tuple([1] * 8),))
    with pytest.raises(PlacementError, match="traced on another model"):
        host_plan(table, 16 * GiB, profile)


def test_the_prediction_is_bytes_at_the_measured_rates(table):
    p = host_plan(table, 16 * GiB)
    host, active = read_per_token(p, table)
    read = 2048 * 1408 * 2                                 # one matrix's expert slice, 5.5 MiB: read by one request
    rate = 1e9 + (np.log(read) - np.log(1 << 20)) / (np.log(8 << 20) - np.log(1 << 20)) * 1e9
    got = predict(p, table, PROFILE)
    want = host / 10e9 + p.tiers.file_bytes_per_token / rate + 28 * 1e-4
    assert 1 / got.decode_tps == pytest.approx(want, rel=1e-9)
    assert got.file_bytes == p.tiers.file_bytes_per_token
    # less RAM: more from the file, slower
    assert predict(host_plan(table, 12 * GiB), table, PROFILE).decode_tps < got.decode_tps
    assert predict(host_plan(table, 64 * GiB), table, PROFILE).seconds["file"] == 0
    # one thread: that thread count's own figures
    one = predict(p, table, PROFILE, threads=1)
    assert one.seconds["ram"] == pytest.approx(host / 6e9) and one.seconds["overhead"] == pytest.approx(28 * 2e-4)


def test_host_memory_is_read_within_the_processs_memory_cgroup(tmp_path):
    """cgroup v1 (hierarchical limit, cache left out of what is used) and v2
    (the tightest memory.max up the tree); no limit: None."""
    from shimmy_py.placement.devices import cgroup_memory
    v1 = tmp_path / "v1" / "memory" / "job"
    v1.mkdir(parents=True)
    (v1 / "memory.stat").write_text(f"total_cache {100 * MiB}\nhierarchical_memory_limit {512 * MiB}\n")
    (v1 / "memory.usage_in_bytes").write_text(str(300 * MiB))
    (tmp_path / "self1").write_text("4:memory:/job\n1:cpu:/\n")
    assert cgroup_memory(str(tmp_path / "self1"), str(tmp_path / "v1")) == (312 * MiB, 512 * MiB)
    v2 = tmp_path / "v2"
    (v2 / "a" / "b").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "a" / "memory.max").write_text(str(1 * GiB))
    (v2 / "a" / "memory.current").write_text(str(400 * MiB))
    (v2 / "a" / "memory.stat").write_text(f"anon {300 * MiB}\nfile {200 * MiB}\n")
    (v2 / "a" / "b" / "memory.max").write_text("max\n")
    (tmp_path / "self2").write_text("0::/a/b\n")
    assert cgroup_memory(str(tmp_path / "self2"), str(v2)) == (GiB - 200 * MiB, GiB)
    (tmp_path / "self3").write_text("0::/\n")
    assert cgroup_memory(str(tmp_path / "self3"), str(v2)) is None


def test_the_mapping_streamed_from_is_the_one_that_covers_the_file(tmp_path):
    """/proc/self/maps may list the file twice (a reader's small map beside
    llama.cpp's whole one): the streamer works within the one that covers it."""
    import ctypes
    import mmap

    from shimmy_py.native.pagecache import PAGE, mapping_base, resident_share
    path = tmp_path / "model.bin"
    path.write_bytes(b"\1" * (64 * PAGE))
    with open(path, "rb") as f:
        small = mmap.mmap(f.fileno(), PAGE, access=mmap.ACCESS_COPY)
        whole = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    head = ctypes.c_char.from_buffer(whole)
    try:
        assert mapping_base(path) == ctypes.addressof(head)
        assert resident_share(ctypes.addressof(head) + 60 * PAGE, PAGE) >= 0.0   # mincore answers inside it
    finally:
        del head
        small.close()
        whole.close()
    assert mapping_base(path) is None


def test_quantized_bytes_are_read_at_their_types_fitted_rate(table):
    from shimmy_py.placement.predict import type_rate
    from shimmy_py.placement.retype import Retyping, retyped, target_types
    rates = {"Q8_0": 5e9, "Q6_K": 6e9, "Q4_K": 7e9}
    assert type_rate("F16", rates, 10e9) == type_rate("F32", rates, 10e9) == 10e9
    assert type_rate("Q8_0", rates, 10e9) == 5e9
    assert type_rate("Q5_0", rates, 10e9) == 7e9           # 5.5 bits a weight: nearest Q4_K's 4.5
    assert type_rate("Q8_0", {}, 10e9) == 10e9             # no type fitted: the F16 rate
    q8 = retyped(table, target_types(table, Retyping("Q8_0")))
    p = plan(q8, [HOST], PlanRequest(n_ctx=4096))
    typed = {**PROFILE, "decode_type_bps": {"2": rates}}
    base, fitted = predict(p, q8, PROFILE), predict(p, q8, typed)
    experts = sum(x.bytes for x in p.tensors if x.role == "routed_experts") * 6 / 64
    assert fitted.seconds["ram"] - base.seconds["ram"] == pytest.approx(experts / 5e9 - experts / 10e9, rel=1e-3)


def test_the_streamed_rate_scales_to_the_models_read_size(table):
    from shimmy_py.placement.predict import file_rate, streamed_rate
    fitted = {**PROFILE, "file_streamed_bps": 0.4e9, "file_streamed_read": 1 << 20}
    assert streamed_rate({**PROFILE, "file_streamed_bps": 0.4e9}, 8 << 20) == 0.4e9     # no size fitted: as is
    assert streamed_rate(fitted, 1 << 20) == pytest.approx(0.4e9)
    assert streamed_rate(fitted, 8 << 20) == pytest.approx(0.4e9 * 2e9 / 1e9)          # 8 MiB reads: twice 1 MiB's
    p = host_plan(table, 16 * GiB)
    slice_read = max(t.slice_bytes // t.reads for t in p.tiers.layers)
    got = predict(p, table, fitted)
    assert got.seconds["file"] == pytest.approx(p.tiers.file_bytes_per_token / streamed_rate(fitted, slice_read))
    assert file_rate(PROFILE, slice_read) > file_rate(PROFILE, 1 << 20)
