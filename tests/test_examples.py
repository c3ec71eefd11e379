"""The examples run as a person would copy them (README lists them): each one
as a script, on the tiny synthetic model, checked by what it prints and
writes. plan_moe_models.py (a minute of llama-quantize dry runs) is marked
slow: `make test` runs it, the middle tier does not."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shimmy_py import ExpertTrace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name, *args, timeout=300):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_generate_stream_chat(tiny_path):
    out = run("generate_stream_chat.py", tiny_path)
    for line in ("generate:", "stream:", "chat:", "tokenize:", "embed:"):
        assert line in out
    assert "-> 'Mixture of experts'" in out                   # tokenize, then back


def test_trace_experts(tiny_path, tmp_path):
    out = run("trace_experts.py", tiny_path, tmp_path)
    assert "(tokens, MoE layers, k)" in out and "LRU cache" in out
    t = ExpertTrace.load(tmp_path / "trace.npz")
    assert t.ids.ndim == 3 and (tmp_path / "experts.png").read_bytes()[:4] == b"\x89PNG"
    assert np.array_equal(t.counts().sum(axis=1), np.full(len(t.layers), len(t.ids) * t.k))


def test_serve_with_the_openai_client(tiny_path):
    out = run("serve_openai_client.py", tiny_path)
    assert "streamed:" in out and "finish length" in out


def test_placement_comparison_on_the_rpc_device(tiny_path, rpc):
    out = run("placement_comparison.py", tiny_path, "--rpc", rpc, "-n", "8")
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "MiB" in ln]
    assert [r.split("|")[1].strip() for r in rows] == ["gpu", "n-cpu-moe=2", "cpu-moe"]   # tiny: 3 layers
    on_accel = [float(r.split("|")[2].split()[0]) for r in rows]
    assert on_accel[0] > on_accel[1] > on_accel[2] > 0      # the experts leave the accelerator step by step


@pytest.mark.parametrize("name", ["plan_deepseek_moe_16b.py", "plan_deepseek_v3_multihost.py"])
def test_planning_examples(name):
    assert "GiB" in run(name)


@pytest.mark.slow
def test_plan_moe_models():
    assert "GiB" in run("plan_moe_models.py", timeout=600)
