"""`shimmy-py quantize` and the proposals of `plan`, with the built
llama-quantize and the real libllama on the tiny model (F32):

- a plan whose host part is over its RAM budget proposes smaller files; the
  proposed command writes one, its tensors are the types the proposal named
  and its size the proposal's, and the same budget then plans it without
  streaming; the command measured greedy agreement and perplexity of both;
- every host weight at Q4_K takes llama.cpp's fallback where a row is not a
  whole number of K blocks (the tiny model's rows are 64 and 192 wide: Q5_0);
- what cannot be done is refused, naming why, and nothing is overwritten;
- a streaming plan loads without the CPU backend's repacked copies (which
  would hold the experts in anonymous memory, where they cannot stream).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shimmy_py import Model
from shimmy_py.gguf_io.tensors import read_table
from shimmy_py.native import log
from shimmy_py.placement.machine import make_plan
from shimmy_py.placement.retype import Retyping, retyped, target_types

CLI = [sys.executable, "-m", "shimmy_py"]


def cli(*args, check=True):
    run = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def budget(tiny_path):
    """Just below what the tiny model's plan holds in host RAM: it streams."""
    return make_plan(tiny_path).device("CPU").total_bytes - 150_000


@pytest.fixture(scope="module")
def q8(tiny_path, budget, tmp_path_factory):
    """The file `plan` proposes first for the whole model, made by the command it prints."""
    planned = json.loads(cli("plan", tiny_path, "--ram-budget", budget, "--json").stdout)
    assert planned["tiers"] is not None
    whole = [p for p in planned["proposals"] if p["layers"] is None]
    assert whole and whole[0]["type"] == "Q8_0" and not whole[0]["streams"]
    out = tmp_path_factory.mktemp("quantized") / "tiny-q8.gguf"
    done = json.loads(cli("quantize", tiny_path, out, *whole[0]["quantize_args"], "--threads", 2, "--json").stdout)
    return out, whole[0], done


def test_the_proposed_file_is_what_the_proposal_said_and_no_longer_streams(tiny_path, budget, q8):
    out, proposal, done = q8
    src = read_table(tiny_path)
    expected = target_types(src, Retyping("Q8_0"))
    written = read_table(out)
    assert {t.name: t.ggml_type for t in written.tensors} == expected
    assert {t.ggml_type for t in written.tensors if t.role == "routed_experts"} == {"Q8_0"}
    assert written.nbytes == retyped(src, expected).nbytes == proposal["file_bytes"] == done["bytes_after"]
    assert done["bytes_before"] == src.nbytes and done["retyped_tensors"] == 6
    assert json.loads(cli("plan", out, "--ram-budget", budget, "--json").stdout)["tiers"] is None


def test_the_command_measured_what_the_change_costs(q8):
    c = q8[2]["comparison"]
    assert c["greedy_tokens"] == 32 and 0 <= c["same_prefix"] <= c["same_positions"] <= 32
    assert c["ppl_before"] > 1 and c["ppl_after"] > 1 and c["tokens_scored"] > 128
    assert c["ppl_before"] != c["ppl_after"]           # other weights: another model


def test_every_host_weight_at_q4_k_takes_llamas_fallback(tiny_path, tmp_path):
    out = tmp_path / "tiny-q4.gguf"
    text = cli("quantize", tiny_path, out, "--type", "q4_k", "--no-compare", "--threads", 2).stdout
    assert "host weights at Q4_K" in text and "lossy" not in text
    types = {t.name: t.ggml_type for t in read_table(out).tensors}
    assert types["blk.0.attn_q.weight"] == types["blk.1.ffn_down_exps.weight"] == "Q5_0"     # 64, 192 wide
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.1.ffn_gate_inp.weight"] == "F32"


def test_what_cannot_be_done_is_refused_naming_why(tiny_path, q8, tmp_path):
    out = q8[0]
    cases = [
        ((tiny_path, out, "--type", "Q8_0"), "exists"),
        ((out, tmp_path / "a.gguf", "--type", "Q4_K", "--experts-only"), "is Q8_0 already"),
        ((out, tmp_path / "b.gguf", "--type", "Q8_0", "--experts-only"), "nothing to quantize"),
        ((tiny_path, tmp_path / "c.gguf", "--type", "Q8_0", "--layers", "1-2"), "add --experts-only"),
        ((tiny_path, tmp_path / "d.gguf", "--type", "Q8_0", "--experts-only", "--layers", "2-1"), "--layers"),
    ]
    for args, why in cases:
        run = cli("quantize", *args, check=False)
        assert run.returncode != 0 and why in run.stderr, (args, run.stderr)
    assert not any((tmp_path / n).exists() for n in ("a.gguf", "b.gguf", "c.gguf", "d.gguf"))


def test_a_streaming_plan_loads_without_repacked_copies(tiny_path, tmp_path):
    q4 = tmp_path / "tiny-q4_0.gguf"
    cli("quantize", tiny_path, q4, "--type", "Q4_0", "--experts-only", "--no-compare")
    total = make_plan(q4).device("CPU").total_bytes
    repacked = {}
    for streams, kw in ((False, {}), (True, {"ram_budget": total - 1})):
        with log.capture() as lines, Model(q4, n_ctx=4096, n_threads=2, **kw) as m:
            assert (m.plan.tiers is not None) == streams
        repacked[streams] = [line for line in lines if "CPU_REPACK model buffer size" in line]
    assert repacked[False] and not repacked[True]       # in RAM this CPU repacks Q4_0; streaming it must not
