"""Every MoE family, for real: synthetic DeepSeekMoE, qwen3moe, qwen2moe, Mixtral-style
llama, deepseek2 (MLA), glm4moe, gpt-oss and the qwen3next hybrid (recurrent
layers) load and generate the greedy tokens llama.cpp's llama-completion
generates, with every strategy on the RPC stand-in; their chat templates
apply, and their plans match llama.cpp's own accounting (issue 12)."""
import subprocess

import pytest

from shimmy_py import Model
from shimmy_py.native import install
from shimmy_py.synthetic import families

PROMPT = "Explain the architecture of a mixture of experts"


@pytest.fixture(scope="module", params=sorted(families.FAMILIES))
def family_model(request, tmp_path_factory):
    path = families.write(tmp_path_factory.mktemp("fam") / f"{request.param}.gguf", request.param, seed=1)
    with Model(path, n_ctx=256, n_threads=2) as m:
        cpu = m.generate(PROMPT, max_tokens=10, temperature=0)
    return request.param, path, cpu


def test_greedy_equals_llama_completion(family_model):
    name, path, ours = family_model
    cmd = [str(install.tool("llama-completion")), "-m", str(path), "-p", PROMPT, "-n", "10", "--temp", "0",
           "-c", "256", "-t", "2", "--no-display-prompt", "-no-cnv", "--no-warmup"]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-1500:]
    assert proc.stdout.decode("utf-8", errors="replace").strip("\n") == ours.text.strip("\n")
    assert ours.completion_tokens == 10


@pytest.mark.parametrize("options", [{}, {"cpu_moe": True}, {"n_cpu_moe": 2}])
def test_placed_on_the_rpc_device_as_planned(family_model, rpc, options):
    name, path, cpu = family_model
    with Model(path, n_ctx=256, n_threads=2, rpc=[rpc], **options) as m:
        report = m.placement_report()
        assert report.ok, str(report)
        roles = {t.role for t in m.plan.tensors if t.device == "CPU"}
        if options:
            assert "routed_experts" in roles
        assert m.generate(PROMPT, max_tokens=10, temperature=0).tokens == cpu.tokens


def read_table_of(path):
    from shimmy_py.gguf_io.tensors import read_table
    return read_table(path)


# what each family's real chat template puts in a prompt (test_chat_templates.py checks
# the whole text against llama-server's)
CHAT_MARKERS = {"deepseek": "User: Hi\n\nAssistant:", "qwen3moe": "<|im_start|>user\nHi<|im_end|>",
                "qwen2moe": "<|im_start|>user\nHi<|im_end|>",
                "qwen3next": "<|im_start|>user\nHi<|im_end|>", "mixtral": "[INST] Hi [/INST]",
                "deepseek2": "<｜User｜>Hi<｜Assistant｜>", "glm4moe": "[gMASK]<sop><|user|>\nHi<|assistant|>",
                "gpt-oss": "<|start|>user<|message|>Hi<|end|><|start|>assistant"}


def test_roles_and_chat_templates(family_model):
    name, path, _ = family_model
    with Model(path, n_ctx=256, n_threads=2) as m:
        roles = {t.role for t in m.plan.tensors}
        assert "routed_experts" in roles and "router" in roles
        assert ("shared_experts" in roles) == (name in ("deepseek", "qwen2moe", "deepseek2", "glm4moe", "qwen3next"))
        if name == "gpt-oss":            # MXFP4 experts, as OpenAI ships them
            assert {t.name.split(".")[-2]: None for t in m.plan.tensors if t.role == "routed_experts"}
            types = {t.ggml_type for t in read_table_of(path).tensors if t.name.endswith("_exps.weight")}
            assert types == {"MXFP4"}
        prompt = m.apply_chat_template([{"role": "user", "content": "Hi"}])
        if name == "gpt-oss":            # sliding-window layers as llama.cpp's pattern 2 makes them
            assert m.plan.request.n_ctx and read_table_of(path).hparams.swa_layers == {0, 2}
        if name == "qwen3next":          # recurrent layers as llama.cpp's full_attention_interval makes them
            hp = read_table_of(path).hparams
            assert hp.recurrent_layers == {0, 2} and hp.kv_bytes(256) < hp.kv_bytes(256, n_seq=2)
        assert CHAT_MARKERS[name] in prompt, prompt
        assert m.chat([{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0).completion_tokens >= 1


@pytest.mark.parametrize("name, params, active, types", [
    ("qwen3-30b-a3b", 30.5, 3.4, {"Q4_K", "Q6_K"}), ("mixtral-8x7b", 46.7, 12.9, {"Q4_K", "Q6_K"}),
    ("qwen3-next-80b-a3b", 79.7, 3.9, {"Q4_K", "Q6_K"}),     # recurrent layers: no KV cache there
    ("gpt-oss-20b", 20.9, 4.2, {"MXFP4", "Q8_0"}),          # 3.6B active without the embedding, as OpenAI counts
    ("glm-4.5-air", 109.2, 13.4, {"Q4_K", "Q6_K"}),         # its NextN block counted, not active
    ("deepseek-v3", 671.0, 37.6, {"Q4_K", "Q6_K"})])
def test_real_shapes_typed_as_the_quantizer_types_them(tmp_path, rpc, name, params, active, types):
    """Shape-only files at the real sizes, in llama-quantize's own Q4_K_M mix,
    that llama.cpp's loader places as planned (no_alloc: nothing is read)."""
    from shimmy_py import PlacementOptions, make_plan, simulate_placement
    from shimmy_py.gguf_io.tensors import read_table
    from shimmy_py.synthetic import shapes
    path = shapes.write_real(tmp_path / f"{name}.gguf", name)
    table = read_table(path)
    total = table.total()
    assert round(total.n_params / 1e9, 1) == params and round(total.n_active / 1e9, 1) == active
    assert types <= {t.ggml_type for t in table.tensors}
    plan = make_plan(path, PlacementOptions(cpu_moe=True, rpc=(rpc,)))
    report = simulate_placement(path, plan)
    assert report.ok, report.problems


FAMILY_FILES = sorted(families.FAMILIES)


@pytest.fixture(scope="module")
def accounting_models(tmp_path_factory, tiny_path):
    d = tmp_path_factory.mktemp("acct")
    files = {name: families.write(d / f"{name}.gguf", name, seed=1) for name in families.FAMILIES}
    return {**files, "deepseek": tiny_path}      # the DeepSeekMoE preset the project was born from


@pytest.mark.parametrize("family", FAMILY_FILES)
@pytest.mark.parametrize("options", [{}, {"cpu_moe": True}, {"n_cpu_moe": 2}, {"fit": True, "vram_budget": "1GiB"}])
def test_plans_match_llama_cpps_own_accounting(accounting_models, rpc, family, options):
    """Weights exact (model buffers), KV cache within 1%, compute reserve
    within 10% of what llama.cpp allocates on the device, for every strategy."""
    with Model(accounting_models[family], n_ctx=4096, n_threads=2, rpc=[rpc], **options) as m:
        report = m.placement_report()
        assert report.ok, str(report)
        acc = m.plan.device(m.plan.accelerator)
        kv, compute = report.kv[acc.name], report.compute[acc.name]
        assert abs(acc.kv_bytes - kv) <= 0.01 * kv, (acc.kv_bytes, kv)
        assert abs(acc.reserve_bytes - compute) <= 0.10 * compute, (acc.reserve_bytes, compute)


def test_a_hybrid_with_recurrent_state_serves_batched(tmp_path):
    """qwen3next's recurrent state is per sequence (no positions to trim): two
    sequences decoded together, and a prompt that continues a cached one,
    give the tokens each gives alone."""
    import threading

    from support.batch_noise import EXACT, assert_decisive
    from support.http import post_json
    from support.servers import config

    from shimmy_py.serving.server import Server
    path = families.write(tmp_path / "qwen3next.gguf", "qwen3next", seed=1)
    prompts = ["Explain the architecture of a mixture of experts", "Tell me a story about", "Hello"]
    with Model(path, n_ctx=256, n_threads=2, **EXACT) as m:
        alone = {p: m.generate(p, max_tokens=8, temperature=0) for p in prompts}
        for p, r in alone.items():
            assert_decisive(m, m.tokenize(p), r.tokens)
    out = {}
    cfg = config(path, ctx=256, parallel=2, exact=True)
    with Server(cfg).start() as srv:
        def ask(p):
            out[p] = post_json(srv.url, "/api/generate", {"prompt": p, "max_tokens": 8, "temperature": 0,
                                                          "stream": False})[1]["response"]
        for _ in range(2):                     # the second round meets the first's cached sequences
            threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert out == {p: r.text for p, r in alone.items()}
        follow = prompts[0] + alone[prompts[0]].text            # continues a cached sequence exactly
        status, body = post_json(srv.url, "/api/generate", {"prompt": follow, "max_tokens": 4, "temperature": 0,
                                                            "stream": False})
    with Model(path, n_ctx=256, n_threads=2, **EXACT) as m:
        assert status == 200 and body["response"] == m.generate(follow, max_tokens=4, temperature=0).text


@pytest.mark.parametrize("family", ["deepseek", "qwen3next"])
def test_fit_measures_the_reserve_by_a_dry_run(accounting_models, rpc, family, monkeypatch):
    """With the reserve measured (asked for, or by default for an architecture
    whose estimate is unchecked) the plan's compute reserve is llama.cpp's own."""
    from dataclasses import replace

    from shimmy_py.gguf_io import arch
    opts = dict(n_ctx=4096, n_threads=2, rpc=[rpc], fit=True, vram_budget="1GiB")
    with Model(accounting_models[family], measure_reserve=True, **opts) as m:
        acc = m.plan.device(m.plan.accelerator)
        assert acc.reserve_bytes == m.placement_report().compute[acc.name]
        assert any("measured by a dry run" in n for n in m.plan.notices)
    with Model(accounting_models[family], **opts) as m:               # a checked estimate: no dry run
        assert not any("measured by a dry run" in n for n in m.plan.notices)
    checked = arch.facts(families.FAMILIES[family].arch)
    monkeypatch.setitem(arch.ARCHES, checked.name, replace(checked, reserve_checked=False))   # as if never checked
    with Model(accounting_models[family], **opts) as m:
        assert any("measured by a dry run" in n for n in m.plan.notices)


def test_the_planned_nextn_block_is_no_warning(accounting_models, caplog):
    """llama.cpp warns of every tensor it skips; for the NextN block the plan
    expects that (debug level), for any other tensor it stays a warning."""
    import logging
    with caplog.at_level(logging.DEBUG, logger="shimmy_py.llama"):
        with Model(accounting_models["glm4moe"], n_ctx=256, n_threads=2) as m:
            skipped = m.plan.not_loaded()
    unused = [r for r in caplog.records if "model has unused tensor" in r.getMessage()]
    assert skipped and len(unused) == len(skipped) and all(r.levelno == logging.DEBUG for r in unused)


def test_the_reserve_measured_for_any_strategy_and_not_for_a_hypothetical_card(accounting_models, rpc):
    from shimmy_py import PlacementError, PlacementOptions, make_plan
    with Model(accounting_models["deepseek"], n_ctx=4096, n_threads=2, rpc=[rpc], cpu_moe=True,
               measure_reserve=True) as m:
        acc = m.plan.device(m.plan.accelerator)
        assert acc.reserve_bytes == m.placement_report().compute[acc.name]
    with pytest.raises(PlacementError, match="hypothetical"):
        make_plan(accounting_models["deepseek"], PlacementOptions(target_vram="8GiB", measure_reserve=True))
