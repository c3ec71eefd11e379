"""What a server is told, checked when it starts and true while it runs:
--config values parsed into the records a worker loads with (and planned,
as its worker would plan them), broken or vanished model files named,
Ollama's models by name, secrets kept out of the log, IPv6, counters that
only grow. Each case was a 500, a traceback, a hang or a silent mistake."""
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.http import metric, post_json, request
from support.servers import config

from shimmy_py.errors import ShimmyError
from shimmy_py.serving.models import settings as models_config
from shimmy_py.serving.models.discovery import discover
from shimmy_py.serving.server import Server


@pytest.fixture(scope="module")
def two(tmp_path_factory, tiny_named):
    return [tiny_named("alpha.gguf"), tiny_named("beta.gguf")]


def serve_with(two, tmp_path, text, suffix=".toml"):
    conf = tmp_path / f"models{suffix}"
    conf.write_text(text)
    return Server(config(None, ctx=256, parallel=1, known_paths=tuple(two), settings=models_config.load(conf)))


@pytest.mark.parametrize("text, message", [
    ('[models.alpha]\noverrides = ["(?<=blk)exps=CPU"]\n', "std::regex"),          # llama.cpp refuses the pattern
    ('[models.alpha]\nn_cpu_moe = 40\n', "out of range"),                           # the model has 3 layers
    ('[models.alpha]\ndevice_capacity = {RPC7 = "1GiB"}\n', "names no device"),
    ('[models.alpah]\nctx = 512\n', "does not serve"),                                # a misspelt name
], ids=["regex", "n-cpu-moe", "capacity", "misspelt"])
def test_config_values_are_checked_at_start_as_a_worker_would_use_them(two, tmp_path, text, message):
    with pytest.raises(ShimmyError, match=message):
        serve_with(two, tmp_path, text)


@pytest.mark.parametrize("text, suffix, message", [
    ('[models.ALPHA]\nctx = 512\n[models.alpha]\nctx = 256\n', ".toml", "are the same model"),
    ('{"models": ' + "[" * 100000 + "]" * 100000 + "}", ".json", "nested"),
    ("[models.alpha]\n" + ".".join(["a"] * 200000) + " = 1\n", ".toml", "larger than|nested deeper"),
    ("[models.alpha]\n" + ".".join(["a"] * 1000) + " = 1\n", ".toml", "nested deeper"),
    ('{"models": {"alpha": {"keep_alive": NaN}}}', ".json", "finite"),
    ('{"models": {"alpha": {"overrides": [5]}}}', ".json", "overrides"),
    ('{"models": {"alpha": {"vram_budget": "1e400GiB", "fit": true}}}', ".json", "vram_budget"),
    ('{"models": {"alpha": {"kv_type": "f7"}}}', ".json", "kv_type"),
    ('{"models": {"alpha": {"n_cpu_moe": -1}}}', ".json", "n_cpu_moe"),
    ('{"models": {"alpha": {"parallel": 1000}}}', ".json", "parallel must be an integer from 1 to 256"),
    ('[models.alpha]\nctx = 99999999999\n', ".toml", "ctx must be an integer from 1 to 16777216"),
], ids=["case-duplicate", "json-nesting-bomb", "toml-200k-part-key", "toml-1000-part-key", "nan-keep-alive",
        "overrides-5", "budget-1e400", "kv-type", "negative-n-cpu-moe", "parallel-as-the-flag", "ctx-as-the-flag"])
def test_bad_config_files_are_one_clear_error(tmp_path, text, suffix, message):
    conf = tmp_path / f"m{suffix}"
    conf.write_text(text)
    with pytest.raises(ShimmyError, match=message):
        models_config.load(conf)


def test_keep_alive_must_be_finite_in_a_request(two):
    with Server(config(None, ctx=256, parallel=1, known_paths=tuple(two))).start() as srv:
        status, _, text = request(srv.url, "/api/generate", raw=b'{"model": "alpha", "prompt": "x", "keep_alive": NaN}')
        assert status == 400 and "finite" in text
        assert post_json(srv.url, "/api/ps", None)[0] == 200             # and the server answers on


def test_broken_and_vanished_models_are_named_not_500(two, tmp_path):
    broken = tmp_path / "broken-q8_0.gguf"
    broken.write_bytes(b"this is not a GGUF file at all" * 10)
    gone = tmp_path / "gone.gguf"
    gone.write_bytes(Path(two[0]).read_bytes())
    known = tuple(discover([tmp_path]))
    with Server(config(None, ctx=256, parallel=1, known_paths=known)).start() as srv:
        gone.unlink()
        status, body = post_json(srv.url, "/v1/completions", {"model": "broken-q8_0", "prompt": "x"})
        assert status == 422 and "broken-q8_0" in body["error"]["message"] and str(tmp_path) not in json.dumps(body)
        status, body = post_json(srv.url, "/api/generate", {"model": "gone", "prompt": "x", "stream": False})
        assert status == 404 and "gone.gguf was removed" in body["error"]
        listed = {m["id"] for m in post_json(srv.url, "/v1/models", None)[1]["data"]}
        assert "gone" not in listed and "broken-q8_0" in listed


def test_ollama_models_are_served_by_name_and_tag(two, tmp_path):
    store = tmp_path / "ollama"
    digest = "ab" * 32
    blob = store / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(Path(two[0]).read_bytes())
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "tinymoe" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                "digest": f"sha256:{digest}"}]}))
    known = tuple(discover([], env={"OLLAMA_MODELS": str(store)}, cwd=tmp_path, home=tmp_path))
    with Server(config(None, ctx=256, parallel=1, known_paths=known)).start() as srv:
        assert [m["id"] for m in post_json(srv.url, "/v1/models", None)[1]["data"]] == ["tinymoe:latest"]
        status, body = post_json(srv.url, "/api/generate", {"model": "tinymoe:latest", "prompt": "x",
                                                            "max_tokens": 2, "stream": False})
        assert status == 200 and body["model"] == "tinymoe:latest"


def test_secrets_stay_out_of_the_log(two, caplog):
    with Server(config(two[0], ctx=256, parallel=1, api_key="sekret")).start() as srv:
        with caplog.at_level(logging.INFO, logger="shimmy_py.server"):
            request(srv.url, "/v1/models?api_key=sekret-in-query", headers={"Authorization": "Bearer sekret"})
            # the access line is written once the answer has gone out: the client can be first
            deadline = time.monotonic() + 10
            while "GET /v1/models 200" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
        assert "GET /v1/models 200" in caplog.text and "sekret" not in caplog.text


def test_ipv6_listen(two):
    with Server(config(two[0], ctx=256, parallel=1, host="::1")).start() as srv:
        assert srv.url.startswith("http://[::1]:")
        assert post_json(srv.url, "/health", None)[0] == 200


def test_counters_only_grow_and_busy_messages_count_loading(two):
    """A worker's restarts stay counted after its model is unloaded (the
    counter went down), and a refusal while a model loads says so (it said
    "0 models are resident")."""
    import os
    import signal
    import time
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(two), max_models=1)
    with Server(cfg).start() as srv:
        assert post_json(srv.url, "/api/generate", {"model": "alpha", "prompt": "x", "max_tokens": 1,
                                                    "stream": False})[0] == 200
        os.kill(srv.state.pool.residents["alpha"].supervisor.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while metric(srv.url, "shimmy_worker_restarts_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        while not srv.state.pool.residents["alpha"].supervisor.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert post_json(srv.url, "/api/generate", {"model": "beta", "prompt": "x", "max_tokens": 1,
                                                    "stream": False})[0] == 200        # alpha unloaded for beta
        assert metric(srv.url, "shimmy_worker_restarts_total") == 1
    from shimmy_py.serving.models.admission import Limits, Loading, Newcomer, admit
    with pytest.raises(ShimmyError, match="0 models are resident and 1 loading"):
        admit([], [Loading("alpha", {})], Newcomer("beta", {}), Limits({}, 1))


@pytest.mark.parametrize("flag", [["--parallel", "100000"], ["--queue", "10000000"], ["--keep-alive", "5x"],
                                  ["--ctx", "99999999999"]])
def test_serve_flags_out_of_range_are_one_line(tiny_path, flag):
    p = subprocess.run([sys.executable, "-m", "shimmy_py", "serve", "--model", str(tiny_path), "--port", "0", *flag],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode in (1, 2) and "Traceback" not in p.stderr
    assert len([ln for ln in p.stderr.splitlines() if "error" in ln]) == 1, p.stderr
