"""The page at / in a real browser: Debian's Chromium, driven by Playwright,
against a real server over loopback. The model is the tiny one on a real
second device (ggml-rpc-server), or the one SHIMMY_PY_PAGE_MODEL names (make
screenshots uses the trained stdlib model); every expectation is read from
the model's own header and the server's own answers.

Each view is photographed into SHIMMY_PY_SCREENSHOTS (default
build/screenshots, not committed); `make screenshots` writes docs/page/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.http import metric, post_json, request
from support.rpc import RPCServer
from support.servers import config, options

from shimmy_py.gguf_io.tensors import read_table
from shimmy_py.serving.server import Server

SHOTS = Path(os.environ.get("SHIMMY_PY_SCREENSHOTS", Path(__file__).parent.parent / "build" / "screenshots"))
KEY = "page-test-key"


def chromium() -> str:
    path = os.environ.get("SHIMMY_PY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the page tests need Chromium: apt-get install chromium (.ci/run installs it)"
    return path


@pytest.fixture(scope="module")
def page_model(tiny_named):
    chosen = os.environ.get("SHIMMY_PY_PAGE_MODEL")
    return Path(chosen) if chosen else tiny_named("deepseek-moe-16b-f16.gguf")


@pytest.fixture(scope="module")
def device():
    with RPCServer() as rpc:        # its own: a ggml-rpc-server serves one client at a time
        yield rpc.endpoint


@pytest.fixture(scope="module")
def server(page_model, device):
    cfg = config(page_model, model=options(trace_experts=True, rpc=(device,)), ctx=2048, parallel=1)
    with Server(cfg).start() as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser tab on the server's page, recording console errors and the API answers."""

    def __init__(self, browser, url: str):
        self.tab = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors, self.answers = [], []
        self.tab.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.on("response", lambda r: self.answers.append((r.url, r.status)))
        self.url = url

    def open(self, ready: bool = True):
        self.tab.goto(self.url + "/")
        if ready:
            self.tab.wait_for_selector("body[data-ready]")
        return self

    def view(self, name: str) -> None:
        self.tab.click(f"#tabs button[data-view={name}]")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def chat(self, prompt: str, temperature: float = 0.0, max_tokens: int = 24, trace: bool = False) -> None:
        self.tab.fill("#temperature", str(temperature))
        self.tab.fill("#max-tokens", str(max_tokens))
        self.tab.set_checked("#trace", trace)
        self.tab.fill("#prompt", prompt)
        self.tab.click("#send")

    def close(self) -> None:
        self.tab.close()


@pytest.fixture
def page(browser, server):
    p = Page(browser, server.url)
    yield p
    p.close()


def model_name(server) -> str:
    return post_json(server.url, "/v1/models", None)[1]["data"][0]["id"]


def test_the_page_loads_offline_under_a_strict_policy_with_no_console_error(page, server):
    status, headers, text = request(server.url, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "<script>" not in text and " style=" not in text and "http://" not in text and "https://" not in text
    page.open()
    assert page.tab.locator("#chat-model option").count() == len(post_json(server.url, "/v1/models", None)[1]["data"])
    for view in ("models", "plan", "experts", "metrics", "chat"):
        page.view(view)
        page.tab.wait_for_selector(f"#view-{view}:not([hidden])")
    assert page.errors == []
    assert all(u.startswith(server.url) for u, _ in page.answers)       # nothing fetched from elsewhere


def test_chat_streams_the_same_answer_the_api_gives(page, server):
    page.open()
    page.tab.fill("#system", "Read settings from a file.")
    page.chat("def read_config(path):", temperature=0, max_tokens=48)
    page.tab.wait_for_selector(".msg.assistant .stats[data-done]")
    shown = page.tab.inner_text(".msg.assistant .content")
    stats = page.tab.inner_text(".msg.assistant .stats")
    assert "TTFT" in stats and "tok/s" in stats and "tokens" in stats
    status, body = post_json(server.url, "/v1/chat/completions", {
        "model": model_name(server), "temperature": 0, "max_tokens": 48,
        "messages": [{"role": "system", "content": "Read settings from a file."},
                     {"role": "user", "content": "def read_config(path):"}]})
    assert status == 200
    assert shown == body["choices"][0]["message"]["content"]
    page.shot("chat")
    # the conversation goes on: the second request carries the first answer
    page.chat("class Config:", max_tokens=4)
    page.tab.wait_for_selector(".msg.assistant:nth-of-type(4) .stats[data-done]")
    assert page.tab.locator(".msg").count() == 4 and page.errors == []


def test_stop_ends_the_generation_on_the_server(page, server):
    page.open()
    decoded = "shimmy_engine_batch_tokens_total"        # tokens through llama_decode, prompts and answers
    before = metric(server.url, decoded)
    page.chat("Write a very long story", temperature=1.0, max_tokens=1900)
    page.tab.wait_for_function("() => document.querySelector('.msg.assistant .content').textContent.length > 0")
    page.tab.click("#stop")
    page.tab.wait_for_selector(".msg.assistant .content[data-stopped]")
    # the worker's figures reach /metrics a moment later: read until they hold still for 2 s (a generation
    # that went on would decode its 1900 tokens meanwhile)
    made, still_since, deadline = None, time.monotonic(), time.monotonic() + 60
    while time.monotonic() - still_since < 2.0 and time.monotonic() < deadline:
        now = metric(server.url, decoded) - before
        if now != made:
            made, still_since = now, time.monotonic()
        time.sleep(0.1)
    assert post_json(server.url, "/api/ps", None)[1]["models"][0]["active_requests"] == 0
    assert 0 < made < 1900, made
    assert page.tab.inner_text(".msg.assistant .stats") == "stopped" and page.errors == []


def test_models_view_lists_the_loaded_model_with_its_bytes_and_unloads_and_loads_it(page, server):
    name = model_name(server)
    post_json(server.url, "/api/generate", {"model": name})            # Ollama's load: no prompt
    page.open()
    page.view("models")
    ps = post_json(server.url, "/api/ps", None)[1]["models"]
    row = page.tab.wait_for_selector(f"#loaded-table tr[data-model='{ps[0]['name']}']")
    assert int(row.get_attribute("data-size")) == ps[0]["size"]
    shown = {d.get_attribute("data-device"): int(d.get_attribute("data-bytes"))
             for d in row.query_selector_all("td:nth-child(3) .device")}
    assert shown == ps[0]["devices"] and len(shown) >= 2            # the CPU and the RPC device
    kv = {d.get_attribute("data-device"): int(d.get_attribute("data-bytes"))
          for d in row.query_selector_all("td.kv .device")}
    assert kv == ps[0]["kv_bytes"] and sum(kv.values()) > 0
    assert "unloads in" in page.tab.inner_text("#loaded-table .countdown") or ps[0]["expires_at"] is None
    page.shot("models")
    row.query_selector("button").click()
    page.tab.wait_for_selector("#loaded .hint")
    assert post_json(server.url, "/api/ps", None)[1]["models"] == []
    page.tab.click(f"#known-table tr[data-model='{name}'] button")
    page.tab.wait_for_selector("#loaded-table tr[data-model]")
    assert len(post_json(server.url, "/api/ps", None)[1]["models"]) == 1 and page.errors == []


def test_plan_view_shows_the_bytes_plan_json_gives(page, server, page_model, device):
    page.open()
    page.view("plan")
    page.tab.click("#plan-show")
    page.tab.wait_for_selector("#plan-devices tr[data-device]")
    shown = [(r.get_attribute("data-device"), int(r.get_attribute("data-weights")), int(r.get_attribute("data-total")))
             for r in page.tab.query_selector_all("#plan-devices tr[data-device]")]
    # the CLI asks the ggml-rpc-server what it holds, which it answers once no model's worker holds it
    post_json(server.url, "/api/generate", {"model": model_name(server), "keep_alive": 0})
    deadline = time.monotonic() + 30
    while post_json(server.url, "/api/ps", None)[1]["models"] and time.monotonic() < deadline:
        time.sleep(0.2)
    cli = subprocess.run([sys.executable, "-m", "shimmy_py", "plan", str(page_model), "--json", "--ctx", "2048",
                          "--rpc", device], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    plan = json.loads(cli.stdout)
    # devices in the same order with the same bytes; ggml numbers RPC devices per process (RPC0, RPC1, ...), and
    # this test process has met other RPC servers before, so the server may call the CLI's RPC0 by another number
    assert [(w, t) for _, w, t in shown] == [(d["weights_bytes"], d["total_bytes"]) for d in plan["devices"]]
    named = {d["name"]: ours for d, (ours, _, _) in zip(plan["devices"], shown)}
    layers = {t["layer"] for t in plan["tensors"] if t["layer"] is not None}
    assert page.tab.locator(".layers .layer").count() == len(layers) + 1   # and the tensors outside layers
    # each segment names its tensors: layer 1's routed experts are where plan --json puts them
    where = {named[t["device"]] for t in plan["tensors"] if t["layer"] == 1 and "_exps" in t["name"]}
    titles = page.tab.locator(".layers .layer[data-layer='1'] .bar span").evaluate_all("ss => ss.map(s => s.title)")
    assert {t.split(",")[0] for t in titles if "ffn_gate_exps" in t} == where
    assert page.tab.inner_text("#plan-flags").startswith(f"llama-server -m {page_model.name} -c 2048")
    page.shot("plan")
    assert page.errors == []


def test_experts_view_draws_the_answers_routing_one_row_per_moe_layer(page, server, page_model):
    table = read_table(page_model)
    moe_layers = sorted({t.layer for t in table.tensors if t.role == "routed_experts"})
    page.open()
    page.chat("def fibonacci(n):", temperature=0, max_tokens=16, trace=True)
    page.tab.wait_for_selector(".msg.assistant .stats[data-done]")
    page.view("experts")
    rows = page.tab.locator("#answer-heatmap .hm-row")
    rows.first.wait_for()
    layers = [int(x.split()[1]) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.label)")]
    assert layers == moe_layers
    assert page.tab.locator("#answer-heatmap .hm-row").first.locator(".hm-cell").count() == table.hparams.n_expert
    assert page.tab.locator("#token-strip .hm-row").count() == len(layers)
    # each cell names its token: the prompt's as the server tokenizes it, the answer's from its logprobs
    titles = page.tab.locator("#token-strip .hm-row").first.locator(".hm-cell").evaluate_all(
        "cs => cs.map(c => c.title)")
    named = re.compile(r'token \d+ ".*" \((prompt|answer)\), layer')
    assert titles and all(named.match(t) for t in titles), titles[:3]
    assert any("(answer)" in t for t in titles)
    page.tab.wait_for_selector("#server-experts .heatmap")
    assert page.tab.locator("#server-experts .heatmap .hm-row").count() == len(layers)
    page.shot("experts")
    assert page.errors == []


def test_metrics_view_counts_requests_and_tokens(page, server):
    page.open()
    page.view("metrics")
    page.tab.wait_for_selector("#m-tokens")
    page.tab.wait_for_function("() => Number(document.querySelector('#m-tokens .value').textContent) > 0",
                               timeout=10000)
    assert float(page.tab.inner_text("#m-tokens .value")) == metric(server.url, "shimmy_generated_tokens_total")
    page.tab.wait_for_function("() => document.querySelectorAll('#m-tokens polyline').length > 0", timeout=10000)
    page.shot("metrics")
    assert page.errors == []


def test_with_an_api_key_the_page_calls_nothing_until_it_is_given(browser, page_model):
    with Server(config(page_model, ctx=512, parallel=1, api_key=KEY)).start() as srv:
        p = Page(browser, srv.url)
        try:
            p.open(ready=False)
            p.tab.wait_for_selector("#key-panel:not([hidden])")
            assert p.tab.is_disabled("#send") and p.tab.locator("#chat-model option").count() == 0
            api = [(u, s) for u, s in p.answers if "/ui/" not in u and not u.endswith("/")]
            assert api and all(s == 401 for _, s in api)       # every call refused, none answered
            p.shot("api-key")
            p.tab.fill("#key-input", KEY)
            p.tab.click("#key-form button")
            p.tab.wait_for_selector("body[data-ready]")
            assert p.tab.is_hidden("#key-panel") and p.tab.locator("#chat-model option").count() >= 1
            p.chat("Hi", max_tokens=4)
            p.tab.wait_for_selector(".msg.assistant .stats[data-done]")
            assert [e for e in p.errors if "401" not in e] == []      # the refused calls' own console lines
        finally:
            p.close()


def test_api_plan_names_what_is_wrong(server):
    def refused(body) -> tuple[int, str]:
        status, answer = post_json(server.url, "/api/plan", body)
        return status, answer["error"]          # shimmy's error shape: the message itself
    status, message = refused({"model": "no-such-model"})
    assert status == 404 and "no-such-model" in message
    status, message = refused({"model": model_name(server), "strategy": "cpu-moe"})
    assert status == 400 and "'strategy'" in message
    status, message = refused({"model": 7})
    assert status == 400 and "'model'" in message
    status, plan = post_json(server.url, "/api/plan", {})            # the only model, as any route takes it
    names = {m["id"] for m in post_json(server.url, "/v1/models", None)[1]["data"]}
    assert status == 200 and plan["model"] in names and plan["file"].endswith(".gguf")
    assert "/" not in plan["file"] and all("/" not in a for a in plan["llama_server_args"])   # no server path


def test_reasoning_and_tool_calls_are_shown_apart_from_the_answer(browser, tmp_path):
    """The tool-caller (synth --behaviour tool-caller, tests/test_clients.py): it
    thinks "Checking weather", calls the offered tool, or answers "It is sunny."."""
    from shimmy_py.synthetic.behaviours import tool_caller
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                             "parameters": city}}
    with Server(config(tool_caller(tmp_path / "tool-caller.gguf"), ctx=1024, parallel=1)).start() as srv:
        p = Page(browser, srv.url)
        try:
            p.open()
            p.chat("What is the weather in Paris?", max_tokens=64)
            p.tab.wait_for_selector(".msg.assistant .stats[data-done]")
            assert p.tab.inner_text(".msg.assistant .reasoning") == "Checking weather"
            assert p.tab.inner_text(".msg.assistant .content") == "It is sunny."
            p.tab.click("#clear-chat")
            p.tab.click("details summary")
            p.tab.fill("#tools", json.dumps([tool]))
            p.chat("What is the weather in Paris?", max_tokens=64)
            p.tab.wait_for_selector(".msg.assistant .stats[data-done]")
            call = p.tab.inner_text(".msg.assistant .tool-call")
            assert call.startswith("call get_weather(") and "city" in json.loads(call[len("call get_weather("):-1])
            assert "finish: tool_calls" in p.tab.inner_text(".msg.assistant .stats")
            p.shot("chat-tools")
            p.tab.fill("#tools", "[not json")
            p.chat("Again?", max_tokens=4)
            p.tab.wait_for_selector(".msg.assistant .error")
            assert "not JSON" in p.tab.inner_text(".msg.assistant:last-child .error") and p.errors == []
        finally:
            p.close()
