"""Experts streamed from the file (placement/tiers.py, generation/streaming.py),
with the real libllama on a real file:

- with a host RAM budget below the model, the plan streams its routed
  experts, and greedy output is token for token what the same model decodes
  with everything in RAM (streaming changes when bytes are read, not what is
  computed); the streamer pinned the resident set and read routed slices;
- in a memory cgroup (v1, as root: procs.MemoryLimit) smaller than the
  file, `shimmy-py generate` plans by the group's limit, streams, and
  decodes the same tokens; `plan` in the group shows the tiers.

The model is `synth --preset stream` (0.7 GB F16, 64 experts of which 6
routed, 0.5 GB of them in routed experts), written once for the module.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from shimmy_py import Model, synth
from shimmy_py.procs import MemoryLimit, ServerProcess, free_port

PROMPT = "def read_lines(path):"
LIMIT = 300 * 2**20


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "stream.gguf"
    synth.write(path, "stream")
    return str(path)


@pytest.fixture(scope="module")
def reference(model_path):
    """Greedy tokens with the whole model in RAM."""
    with Model(model_path, n_ctx=64, n_threads=2) as m:
        assert m.plan.tiers is None and m.streamer is None
        return m.generate(PROMPT, max_tokens=8, temperature=0).tokens


def test_a_budget_below_the_model_streams_its_experts_and_decodes_the_same_tokens(model_path, reference):
    with Model(model_path, n_ctx=64, n_threads=2, ram_budget="200MiB") as m:
        tiers = m.plan.tiers
        assert tiers is not None and tiers.streamed_bytes > 0.5 * os.path.getsize(model_path)
        got = m.generate(PROMPT, max_tokens=8, temperature=0)
        stats = m.streamer.stats
        assert got.tokens == reference
        assert m.streamer.method == "fadvise"                      # the default
        assert stats.pinned_bytes == tiers.resident_bytes          # as root: mlock holds the resident set
        n_moe = len(tiers.layers)
        assert stats.tokens >= 8 and stats.routed >= stats.tokens * n_moe * 3   # gate, up, down of >= 1 expert
        assert stats.missed <= stats.routed                 # the file is in the page cache here: nothing need miss


def test_the_pread_method_decodes_the_same_tokens(model_path, reference):
    with Model(model_path, n_ctx=64, n_threads=2, ram_budget="200MiB", stream_method="pread") as m:
        assert m.generate(PROMPT, max_tokens=8, temperature=0).tokens == reference
        assert m.streamer.method == "pread" and m.streamer.stats.routed > 0


def test_the_own_method_decodes_the_same_tokens_within_its_share(model_path, reference):
    """--stream-method own: the streamed tensors' pages are the streamer's
    own (zero until it reads them), so equal tokens mean every routed slice
    was read before its layer computed. It reads less than the routed bytes
    (what it holds is reused), and holds no more than the plan's share for
    streamed experts beyond one layer's routed set."""
    with Model(model_path, n_ctx=64, n_threads=2, ram_budget="200MiB", stream_method="own") as m:
        assert m.generate(PROMPT, max_tokens=8, temperature=0).tokens == reference
        s, tiers = m.streamer, m.plan.tiers
        assert s.method == "own" and 0 < s.stats.missed <= s.stats.routed and s.stats.bytes_read > 0
        one_layer = max(t.slice_bytes for t in tiers.layers) * s.n_expert     # a prompt may route to all
        assert s.held_bytes <= max(tiers.cache_bytes, one_layer) and s.held_bytes == sum(s.held.values())
        layer, e = next(iter(s.held))                 # a held slice is the file's bytes
        offset, size = s.slices[layer][0]
        with open(model_path, "rb") as f:
            f.seek(offset + e * size)
            want = f.read(size)
        got = np.ctypeslib.as_array((ctypes.c_ubyte * size).from_address(s.base + offset + e * size))
        assert got.tobytes() == want


@pytest.mark.parametrize("method", ["pread", "own"])
def test_bench_streams_with_the_method_asked(model_path, method):
    """bench loads the plan it made with the rest of its placement options:
    --stream-method reached the plan but not the load (every method ran as
    pread) until this test."""
    from shimmy_py.bench import run_bench
    from shimmy_py.placement.options import PlacementOptions
    base = PlacementOptions(ram_budget="200MiB", stream_method=method)
    [result] = run_bench(model_path, ["gpu"], n_prompt=8, n_gen=4, reps=1, threads=2, base=base)
    assert result.streamed["method"] == method and result.streamed["routed_slices"] > 0


@pytest.mark.parametrize("feed", ["sampled", "random"])
def test_bench_counts_what_decoding_streamed_apart_from_the_prompt(model_path, feed):
    """The figures `decode` holds are those of the decoded tokens alone: a
    prompt of 8 tokens is one batch whose reads, counted with the rest,
    made the whole run's bytes per token no token's (calibrate fitted its
    streamed rate on them)."""
    from shimmy_py.bench import run_bench
    from shimmy_py.placement.options import PlacementOptions
    base = PlacementOptions(ram_budget="200MiB")
    [result] = run_bench(model_path, ["gpu"], n_prompt=8, n_gen=6, reps=2, threads=2, base=base, feed=feed)
    whole, decode = result.streamed, result.streamed["decode"]
    assert result.feed == feed and result.decode_tps > 0
    assert decode["tokens"] == 2 * 5                   # n_gen - 1 steps a run: the first token is the prompt's
    assert whole["tokens"] > decode["tokens"] + 2 * 8  # the warm-up's and both prompts' tokens besides
    assert 0 < decode["routed_slices"] < whole["routed_slices"]
    assert decode["file_bytes"] <= whole["file_bytes"]


def test_bench_feeds_random_tokens_only_without_a_draft(model_path):
    from shimmy_py.bench import run_bench
    from shimmy_py.generation.spec_modes import SpeculativeOptions
    with pytest.raises(Exception, match="--feed random .* does not apply with --spec-type ngram-simple"):
        run_bench(model_path, ["gpu"], n_prompt=8, n_gen=4, reps=1, feed="random",
                  speculative=SpeculativeOptions(spec_type="ngram-simple"))
    with pytest.raises(Exception, match="bench feed 'typed'"):
        run_bench(model_path, ["gpu"], n_prompt=8, n_gen=4, reps=1, feed="typed")


def test_the_resident_set_is_pinned_before_the_streamed_tensors_are_marked_random(model_path, tmp_path, monkeypatch):
    """The plan's resident experts lie inside the streamed tensors: pinned
    after those were marked MADV_RANDOM, mlock read them a page (4 KiB) a
    fault. The flagship with a routing profile took 386 s to load that way,
    39 s pinned first. With a
    small file llama.cpp's own prefetch at load hides it, so the order is
    what is checked, with the page-cache calls recorded."""
    from shimmy_py.generation import streaming
    from shimmy_py.placement.machine import make_plan
    from shimmy_py.placement.options import PlacementOptions
    profile = tmp_path / "hot.npz"
    counts = np.ones((5, 64), dtype=np.int64)
    counts[:, :16] = 100                                    # 16 hot experts a layer: the plan keeps them resident
    np.savez(profile, layers=np.arange(1, 6), counts=counts)
    plan = make_plan(model_path, PlacementOptions(n_ctx=64, ram_budget="300MiB", expert_profile=str(profile)))
    calls = []
    monkeypatch.setattr(streaming.pagecache, "mapping_base", lambda path: 1 << 40)
    monkeypatch.setattr(streaming.pagecache, "lock", lambda addr, n: calls.append("lock"))
    monkeypatch.setattr(streaming.pagecache, "advise", lambda addr, n, how: calls.append("random"))
    monkeypatch.setattr(streaming.pagecache, "unlock", lambda addr, n: None)
    streamer = streaming.ExpertStreamer(model_path, plan.tiers)
    try:
        streamer.attach()
        assert any(plan.tiers.resident_experts(layer) for layer in streamer.slices)
        assert "lock" in calls and "random" in calls
        assert "lock" not in calls[calls.index("random"):]          # every lock before any advice
    finally:
        streamer.close()


def test_a_load_mode_that_copies_the_file_in_is_refused_when_experts_stream(model_path):
    with pytest.raises(Exception, match="cannot stream experts from the file"):
        Model(model_path, n_ctx=64, ram_budget="200MiB", load_mode="none")


def test_in_a_memory_cgroup_smaller_than_the_file_it_plans_by_the_limit_and_decodes_the_same(model_path, reference):
    assert os.path.getsize(model_path) > 2 * LIMIT
    cmd = [sys.executable, "-m", "shimmy_py"]
    with MemoryLimit(LIMIT) as cg:
        plan, _ = cg.run([*cmd, "plan", model_path, "--ctx", "64", "--json"], drop_caches=False)
        assert plan.returncode == 0, plan.stderr
        tiers = json.loads(plan.stdout)["tiers"]
        assert tiers is not None and tiers["budget_bytes"] < LIMIT
        done, peak = cg.run([*cmd, "generate", model_path, "-p", PROMPT, "-n", "8", "--temp", "0", "--ctx", "64",
                             "--threads", "2", "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["tokens"] == reference
    assert peak <= LIMIT
    streamed = out["streamed"]          # the page cache was dropped first: routed experts came from the disk
    assert 0 < streamed["missed_slices"] <= streamed["routed_slices"] and streamed["file_bytes"] > 0
    assert streamed["pinned_bytes"] > 0


def test_the_own_method_in_a_memory_cgroup_decodes_the_same_or_says_it_cannot(model_path, reference):
    """Its memory, unlike the page cache, is not reclaimed: it sizes itself
    by what the group leaves and keeps within the limit (no OOM kill), or,
    where a layer's experts would not fit beside the pinned set, says so."""
    cmd = [sys.executable, "-m", "shimmy_py", "generate", model_path, "-p", PROMPT, "-n", "8", "--temp", "0",
           "--ctx", "64", "--threads", "2", "--stream-method", "own", "--json"]
    with MemoryLimit(LIMIT + 100 * 2**20) as cg:
        done, peak = cg.run(cmd)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["tokens"] == reference and peak <= LIMIT + 100 * 2**20
    assert 0 < out["streamed"]["missed_slices"] <= out["streamed"]["routed_slices"]
    with MemoryLimit(LIMIT) as cg:
        done, _ = cg.run(cmd)
    assert done.returncode == 1 and "--stream-method own" in done.stderr
    assert "use --stream-method fadvise" in done.stderr


def test_plan_and_generate_take_the_flags_and_name_a_bad_budget(model_path):
    out = subprocess.run([sys.executable, "-m", "shimmy_py", "plan", model_path, "--ram-budget", "50MiB",
                          "--ctx", "64"], capture_output=True, text=True)
    assert out.returncode == 1 and "cannot hold even what every token reads" in out.stderr
    out = subprocess.run([sys.executable, "-m", "shimmy_py", "plan", model_path, "--stream-method", "mmap"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "--stream-method" in out.stderr


@pytest.fixture
def machine_profile():
    """The machine profile (calibrate.py) the server predicts with: this
    machine's own if it was calibrated, else a stated one, removed after."""
    from shimmy_py.placement.profile import VERSION, load_profile, profile_path
    path = profile_path()
    made = load_profile() is None
    before = path.read_bytes() if made and path.exists() else None     # an older profile's file, put back after
    if made:
        reads = {"1048576x8": 1e9, "8388608x8": 2e9}
        path.write_text(json.dumps({"version": VERSION, "threads": 2, "ram_read_bps": {"2": 20e9},
                                    "decode_read_bps": {"2": 10e9}, "file_read_bps": reads,
                                    "file_cached_read_bps": reads, "layer_overhead_s": {"2": 1e-4},
                                    "prefill_flops": {"2": 1e11}}))
    yield
    if made and before is not None:
        path.write_bytes(before)
    elif made:
        path.unlink()


def test_the_server_shows_what_streams_in_api_ps_and_metrics(model_path, machine_profile):
    """serve with --ram-budget: the model streams; /api/ps has its resident and
    streamed bytes beside the reads its streamer measured, and its predicted
    speed; /metrics counts the reads and shows the prediction."""
    port = free_port()
    argv = [sys.executable, "-m", "shimmy_py", "serve", "--model", model_path, "--port", str(port), "--ctx", "64",
            "--ram-budget", "200MiB", "--threads", "2"]
    with ServerProcess(argv, port, timeout=120) as srv:
        body = json.dumps({"model": "stream", "prompt": PROMPT, "max_tokens": 8, "temperature": 0,
                           "stream": False}).encode()
        req = urllib.request.Request(srv.url + "/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            assert json.loads(r.read())["usage"]["completion_tokens"] == 8
        deadline = time.monotonic() + 10
        while True:                        # the worker's figures come with its next heartbeat
            with urllib.request.urlopen(srv.url + "/api/ps", timeout=30) as r:
                entry = json.loads(r.read())["models"][0]
            streaming = entry["streaming"]
            if streaming["miss_rate"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert streaming["resident_bytes"] > 0 and streaming["streamed_bytes"] > 2 * streaming["resident_bytes"]
        assert streaming["expected_miss_rate"] > 0 and streaming["miss_rate"] is not None
        assert entry["planned_bytes"]["CPU"] < os.path.getsize(model_path) / 2      # admission: the resident set
        assert entry["predicted"]["decode_tps"] > 0
        with urllib.request.urlopen(srv.url + "/metrics", timeout=30) as r:
            metrics = r.read().decode()
        routed = next(float(line.split()[1]) for line in metrics.splitlines()
                      if line.startswith("shimmy_stream_routed_slices_total "))
        assert routed > 0
        assert 'shimmy_predicted_decode_tokens_per_second{model="stream"}' in metrics


def test_a_trace_taken_while_streaming_is_the_profile_that_keeps_experts_resident(model_path, tmp_path):
    """`trace --out` on the streaming model (the trace and the streamer share
    the graph tap), then `plan --expert-profile`: with room beyond what every
    token reads, the most routed experts of the trace become resident."""
    trace = tmp_path / "trace.npz"
    cmd = [sys.executable, "-m", "shimmy_py"]
    done = subprocess.run([*cmd, "trace", model_path, "-p", PROMPT, "-n", "16", "--ctx", "64", "--ram-budget",
                           "200MiB", "--out", str(trace)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = subprocess.run([*cmd, "plan", model_path, "--ctx", "64", "--ram-budget", "300MiB", "--expert-profile",
                          str(trace), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    tiers = plan["tiers"]
    assert tiers["profiled"] and sum(len(layer["resident_experts"]) for layer in tiers["layers"]) > 0
    counts = np.load(trace)["counts"]
    first = tiers["layers"][0]
    hottest = int(counts[0].argmax())
    assert hottest in first["resident_experts"]


def test_plan_predict_prints_each_plans_speed_from_the_machine_profile(model_path, machine_profile):
    cmd = [sys.executable, "-m", "shimmy_py", "plan", model_path, "--predict", "--ram-budget", "200MiB", "--ctx", "64"]
    text = subprocess.run(cmd, capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    header, row = text.stdout.splitlines()[:2]
    assert "decode tok/s" in header and row.split()[0] == "gpu"
    rows = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True).stdout)
    assert rows[0]["strategy"] == "gpu" and rows[0]["decode_tps"] > 0 and rows[0]["file_bytes"] > 0


def test_a_streaming_flag_on_a_plan_that_does_not_stream_says_so(model_path, tmp_path, caplog):
    """Nothing is ignored in silence: --expert-profile on a plan that fits is a
    notice of the plan; --stream-method a warning at load."""
    import logging
    profile = tmp_path / "p.npz"
    np.savez(profile, layers=np.arange(1, 6), counts=np.ones((5, 64), dtype=np.int64))
    out = subprocess.run([sys.executable, "-m", "shimmy_py", "plan", model_path, "--ctx", "64", "--expert-profile",
                          str(profile)], capture_output=True, text=True)
    assert out.returncode == 0 and "--expert-profile: nothing streams in this plan" in out.stdout
    with caplog.at_level(logging.WARNING, logger="shimmy_py"), \
            Model(model_path, n_ctx=64, n_threads=2, stream_method="pread"):
        pass
    assert "--stream-method pread: nothing streams" in caplog.text
