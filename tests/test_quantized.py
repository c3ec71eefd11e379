"""Quantized models run, on this machine, with no SIGILL: F16 and Q8_0 as
synth writes them, Q4_K_M as llama.cpp's own quantizer writes it (from the
tiny-k preset, whose rows are whole K-quant blocks); shimmy_py's
greedy tokens equal llama.cpp's llama-completion on each, and the plan's
bytes for every tensor equal the file's."""
import subprocess

import pytest

from shimmy_py import Model, make_plan, synth
from shimmy_py.gguf_io.reader import read_header
from shimmy_py.native import install

PROMPT = "Explain the architecture of DeepSeek MoE"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    d = tmp_path_factory.mktemp("quant")
    files = {dtype: synth.write(d / f"tiny-{dtype}.gguf", "tiny", seed=1, dtype=dtype) for dtype in ("f16", "q8_0")}
    base = synth.write(d / "tiny-k-f16.gguf", "tiny-k", seed=1)
    out = d / "tiny-k-q4_k_m.gguf"
    proc = subprocess.run([str(install.tool("llama-quantize")), str(base), str(out), "Q4_K_M"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files["q4_k_m"] = out
    return files


@pytest.mark.parametrize("dtype", ["f16", "q8_0", "q4_k_m"])
def test_greedy_tokens_equal_llama_completions(quantized, dtype):
    path = quantized[dtype]
    with Model(path, n_ctx=256, n_threads=2) as m:
        ours = m.generate(PROMPT, max_tokens=12, temperature=0)
    cmd = [str(install.tool("llama-completion")), "-m", str(path), "-p", PROMPT, "-n", "12", "--temp", "0",
           "-c", "256", "-t", "2", "--no-display-prompt", "-no-cnv", "--no-warmup"]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode(errors="replace")[-1500:])
    assert proc.stdout.decode("utf-8", errors="replace").strip("\n") == ours.text.strip("\n")
    assert ours.completion_tokens == 12


def test_q4_k_m_mixes_types_and_the_plan_prices_each_tensor_as_stored(quantized):
    h = read_header(quantized["q4_k_m"])
    kinds = {t.ggml_type.name for t in h.tensors}
    assert {"Q4_K", "Q6_K"} <= kinds, kinds       # the quantizer assigns K-quant types per tensor
    plan = make_plan(quantized["q4_k_m"])
    stored = {t.name: t.nbytes for t in h.tensors}
    assert {t.name: t.bytes for t in plan.tensors} == stored
