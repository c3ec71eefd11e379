"""Expert routing traces (issue 22), checked against routers computed apart
from llama.cpp: on the DeepSeekMoE synthetic model, the NumPy forward pass of
tests/support/reference.py (float64, from the file's weights); on every
family, a NumPy router over each MoE layer's input as the graph computed it
(read through the same tap), with the family's gating written out here from
its paper and llama.cpp's src/models/*.cpp. Tracing must change no token."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from support.reference import Reference

from shimmy_py import Model
from shimmy_py.generation.experts import ExpertRecorder, ExpertTrace
from shimmy_py.gguf_io import arch
from shimmy_py.gguf_io.reader import read_header, tensor_array
from shimmy_py.synthetic import families

PROMPT = "Explain the architecture of a mixture of experts"

# whether a family normalises the chosen experts' weights, where the file's keys do not say; the
# gating itself is the architecture table's (gguf_io/arch.py: ArchFacts.router), or the file's key
NORMALISED = {"deepseek": False, "qwen2moe": False, "qwen3moe": True, "mixtral": True, "qwen3next": True,
              "gpt-oss": False}
GATING_KEY = {1: arch.SOFTMAX, 2: arch.SIGMOID}


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_router(x, header, layer, family, k):
    """(ids, weights, selection scores) of the tokens whose router input is x (tokens, n_embd)."""
    t = {i.name: i for i in header.tensors}
    b = f"blk.{layer}."
    logits = x.astype(np.float64) @ tensor_array(header, t[b + "ffn_gate_inp.weight"]).astype(np.float64).T
    if b + "ffn_gate_inp.bias" in t:
        logits += tensor_array(header, t[b + "ffn_gate_inp.bias"])
    gating = GATING_KEY.get(header.arch_key("expert_gating_func")) or arch.facts(header.architecture).router
    norm = header.arch_key("expert_weights_norm", NORMALISED.get(family))
    probs = {arch.SOFTMAX: softmax, arch.SIGMOID: lambda v: 1 / (1 + np.exp(-v)),
             arch.SOFTMAX_AFTER_TOPK: lambda v: v}[gating](logits)
    select = probs + tensor_array(header, t[b + "exp_probs_b.bias"]) if b + "exp_probs_b.bias" in t else probs
    ids = np.argsort(-select, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(probs, ids, axis=1)
    if gating == arch.SOFTMAX_AFTER_TOPK:
        w = softmax(w)
    if norm:
        w = w / w.sum(1, keepdims=True)
    scale = header.arch_key("expert_weights_scale", 0.0)
    if scale not in (0.0, 1.0):
        w = w * scale
    return ids, w, select


def assert_same_routing(ids, weights, ref_ids, ref_w, select, where):
    """Equal expert sets per token; a difference only where the reference's k-th
    and (k+1)-th scores nearly tie (F16 weights against float64), at most 3%."""
    k = ids.shape[1]
    same = np.array([set(a) == set(b) for a, b in zip(ids.tolist(), ref_ids.tolist())])
    ordered = -np.sort(-select, axis=1)
    gap = np.abs(ordered[:, k - 1] - ordered[:, k]) / np.maximum(np.abs(ordered[:, k - 1]), 1e-6)
    assert (same | (gap < 2e-2)).all(), f"{where}: tokens {np.flatnonzero(~same)} routed differently"
    assert same.mean() >= 0.97, f"{where}: {np.flatnonzero(~same)}"
    # weights, matched by expert id
    for t in np.flatnonzero(same):
        mine = dict(zip(ids[t].tolist(), weights[t].tolist()))
        ref = dict(zip(ref_ids[t].tolist(), ref_w[t].tolist()))
        for e in mine:
            assert mine[e] == pytest.approx(ref[e], rel=2e-2, abs=2e-3), f"{where}: token {t} expert {e}"


@pytest.fixture(scope="module")
def tiny_trace(tiny_path):
    with Model(tiny_path, n_ctx=256, n_threads=2) as m:
        plain = m.generate(PROMPT, max_tokens=12, temperature=0)
        traced = m.generate(PROMPT, max_tokens=12, temperature=0, trace_experts=True)
        prompt = m.tokenize(PROMPT)
    return plain, traced, prompt


def test_deepseek_routing_equals_the_numpy_forward_pass(tiny_path, tiny_trace):
    _, traced, prompt = tiny_trace
    tr = traced.experts
    tokens = [*prompt, *traced.tokens][:len(tr.ids)]
    assert tr.tokens == tokens and tr.n_prompt == len(prompt)
    # every token fed to the model is routed, the last sampled one never was
    assert len(tr.ids) == len(prompt) + len(traced.tokens) - 1
    probs = Reference(tiny_path).routing(tokens)
    assert tuple(sorted(probs)) == tr.layers        # the leading dense layer is not routed
    for li, layer in enumerate(tr.layers):
        ref_ids = np.argsort(-probs[layer], axis=1, kind="stable")[:, :tr.k]
        ref_w = np.take_along_axis(probs[layer], ref_ids, axis=1)    # DeepSeekMoE: not renormalised
        assert_same_routing(tr.ids[:, li], tr.weights[:, li], ref_ids, ref_w, probs[layer], f"layer {layer}")
    assert tr.counts().sum() == len(tr.ids) * len(tr.layers) * tr.k


def test_tracing_changes_no_token(tiny_trace):
    plain, traced, _ = tiny_trace
    assert traced.tokens == plain.tokens and traced.text == plain.text


@pytest.mark.parametrize("family", sorted(families.FAMILIES))
def test_every_family_routes_as_a_numpy_router(family, tmp_path):
    path = families.write(tmp_path / f"{family}.gguf", family, seed=1)
    header = read_header(path)
    k, n_expert = header.arch_key("expert_used_count"), header.arch_key("expert_count")
    with Model(path, n_ctx=256, n_threads=2) as m:
        plain = m.generate(PROMPT, max_tokens=6, temperature=0)
        recorder = ExpertRecorder(router_inputs=True)
        traced = m.generate(PROMPT, max_tokens=6, temperature=0, trace_experts=recorder)
    tr = traced.experts
    assert traced.tokens == plain.tokens
    assert tr.ids.shape == (len(tr.tokens), len(tr.layers), k) and tr.n_experts == n_expert
    assert ((tr.ids >= 0) & (tr.ids < n_expert)).all()
    inputs = np.concatenate(recorder.inputs)
    for li, layer in enumerate(tr.layers):
        ref_ids, ref_w, select = numpy_router(inputs[:, li], header, layer, family, k)
        assert_same_routing(tr.ids[:, li], tr.weights[:, li], ref_ids, ref_w, select, f"{family} layer {layer}")


def test_the_cli_writes_arrays_picture_and_summary(tiny_path, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The first prompt\nA second, longer prompt about experts\n")
    out, png = tmp_path / "trace.npz", tmp_path / "experts.png"
    proc = subprocess.run([sys.executable, "-m", "shimmy_py", "trace", str(tiny_path), "--file", str(prompts),
                           "-n", "4", "--out", str(out), "--plot", str(png), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    tr = ExpertTrace.load(out)
    assert len(tr.starts) == 2 and report["tokens"] == len(tr.ids)
    assert report["layers"] == list(tr.layers) and np.array(report["counts"]).tolist() == tr.counts().tolist()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strip = png.with_name("experts.strip.png")
    assert strip.exists()


def test_the_cli_names_a_missing_prompt(tiny_path):
    proc = subprocess.run([sys.executable, "-m", "shimmy_py", "trace", str(tiny_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "-p" in proc.stderr and "Traceback" not in proc.stderr


def test_the_comparison_sees_a_wrong_router(tiny_path, tiny_trace):
    """The checks have power: experts renumbered, or weights renormalised, fail."""
    _, traced, prompt = tiny_trace
    tr = traced.experts
    probs = Reference(tiny_path).routing([*prompt, *traced.tokens][:len(tr.ids)])
    layer, li = tr.layers[0], 0
    ref_ids = np.argsort(-probs[layer], axis=1, kind="stable")[:, :tr.k]
    ref_w = np.take_along_axis(probs[layer], ref_ids, axis=1)
    with pytest.raises(AssertionError):
        assert_same_routing((tr.ids[:, li] + 1) % tr.n_experts, tr.weights[:, li], ref_ids, ref_w, probs[layer], "")
    with pytest.raises(AssertionError):
        assert_same_routing(tr.ids[:, li], tr.weights[:, li], ref_ids, ref_w / ref_w.sum(1, keepdims=True),
                            probs[layer], "")


def test_the_server_returns_and_counts_routing(tiny_path, tiny_trace):
    """serve --trace-experts: a request with return_routed_experts gets the
    routing the REPL traces for the same greedy generation (the engine's
    batched decode, with another request in the same steps), and /metrics
    counts every layer's choices; without the flag the field is an error
    naming it."""
    import threading

    from support.http import post_json, request, sse_events
    from support.servers import config, options

    from shimmy_py.serving.server import Server
    _, traced, prompt = tiny_trace
    with Server(config(tiny_path, model=options(trace_experts=True), ctx=512, parallel=2)).start() as srv:
        other = threading.Thread(target=post_json, args=(srv.url, "/v1/completions",
                                                         {"prompt": "Something else entirely", "max_tokens": 24}))
        other.start()
        status, body = post_json(srv.url, "/v1/completions", {"prompt": PROMPT, "max_tokens": 12, "temperature": 0,
                                                              "return_routed_experts": True, "stream": False})
        other.join()
        assert status == 200, body
        tr = traced.experts
        assert body["routed_experts_layers"] == list(tr.layers)
        ours = np.array(body["prompt_routed_experts"])
        same_text = body["choices"][0]["text"] == traced.text
        if same_text:   # batched with another request, a greedy token may differ (batch noise): then the prompt only
            ours = np.concatenate([ours, np.array(body["choices"][0]["routed_experts"])])
        theirs = tr.ids[:len(ours)]
        assert ours.shape == theirs.shape and len(ours) == (len(tr.ids) if same_text else tr.n_prompt)
        # the same expert sets (a row of another sequence, or of the wrong token, would share few of them);
        # exact but for a near tie that batching can flip
        agree = np.mean([set(a) == set(b) for a, b in zip(ours.reshape(-1, tr.k).tolist(),
                                                           theirs.reshape(-1, tr.k).tolist())])
        assert agree >= 0.95, agree
        _, _, text = request(srv.url, "/metrics")
        counts = {}
        for line in text.splitlines():
            if line.startswith("shimmy_expert_selections_total{"):
                labels, value = line.split("} ")
                layer = int(labels.split('layer="')[1].split('"')[0])
                counts[layer] = counts.get(layer, 0) + int(value)
        # every layer counted the same rows (those with logits), k choices each
        assert set(counts) == set(tr.layers) and len(set(counts.values())) == 1
        assert counts[tr.layers[0]] % tr.k == 0 and counts[tr.layers[0]] >= (len(tr.ids) - tr.n_prompt) * tr.k
        # streamed, OpenAI's routes carry the routing in the last chunk (the page's chat reads it there)
        status, _, text = request(srv.url, "/v1/completions", {"prompt": PROMPT, "max_tokens": 12, "temperature": 0,
                                                               "return_routed_experts": True, "stream": True})
        last = json.loads(sse_events(text)[-2])
        assert status == 200 and last["routed_experts_layers"] == list(tr.layers) and "timings" in last
        streamed = np.array(last["prompt_routed_experts"] + last["choices"][0]["routed_experts"])
        theirs = tr.ids[:len(streamed)]
        assert streamed.shape == theirs.shape and len(streamed) > tr.n_prompt
        agree = np.mean([set(a) == set(b) for a, b in zip(streamed.reshape(-1, tr.k).tolist(),
                                                           theirs.reshape(-1, tr.k).tolist())])
        assert agree >= 0.95, agree
        status, body = post_json(srv.url, "/api/generate", {"prompt": "x", "return_routed_experts": True})
        assert status == 400 and "stream" in body["error"]    # shimmy's error shape; its stream has no last object
    with Server(config(tiny_path, ctx=512, parallel=1)).start() as srv:
        status, body = post_json(srv.url, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "return_routed_experts": True})
        assert status == 400 and "--trace-experts" in body["error"]["message"]
