"""Ollama's native API, driven by the official `ollama` Python client as its
users drive it: generate and chat (whole and streamed as NDJSON), options,
format, think, tools and a tool turn, list, show, ps, version; and the rule
that keeps shimmy's own /api/generate (SSE, max_tokens) as it was.

The model is `synth --behaviour tool-caller` (see tests/test_clients.py):
it thinks "Checking weather", calls the offered tool, and answers "It is
sunny." after a tool result or when no tool is offered.
"""
from __future__ import annotations

import json
import time

import jsonschema
import pytest
from support.http import post_json
from support.servers import config

from shimmy_py.serving.server import Server
from shimmy_py.synthetic.behaviours import tool_caller

MODEL = "tool-caller"
ANSWER, THOUGHT = "It is sunny.", "Checking weather"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": SCHEMA}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
GREEDY = {"temperature": 0, "num_predict": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tool_caller(tmp_path_factory.mktemp("ollama") / f"{MODEL}.gguf")
    with Server(config(path, ctx=4096, parallel=2)).start() as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    import ollama
    c = ollama.Client(host=server.url, timeout=120)
    yield c
    c._client.close()


def test_generate_whole_and_streamed(client):
    r = client.generate(model=MODEL, prompt=ASK[0]["content"], options=GREEDY)
    assert (r.response, r.thinking, r.done, r.done_reason) == (ANSWER, THOUGHT, True, "stop")
    assert r.prompt_eval_count > 10 and r.eval_count > 0
    assert r.total_duration >= r.eval_duration > 0 and r.prompt_eval_duration > 0 and r.load_duration >= 0
    chunks = list(client.generate(model=MODEL, prompt=ASK[0]["content"], options=GREEDY, stream=True))
    assert "".join(c.response for c in chunks) == ANSWER
    assert "".join(c.thinking or "" for c in chunks) == THOUGHT
    assert [c.done for c in chunks].count(True) == 1 and chunks[-1].done and chunks[-1].eval_count == r.eval_count


def test_options_num_predict_system_and_raw(client):
    r = client.generate(model=MODEL, prompt="Hi", options={"num_predict": 2, "temperature": 0})
    assert (r.eval_count, r.done_reason) == (2, "length")
    with_system = client.generate(model=MODEL, prompt="Hi", system="Be brief.", options=GREEDY)
    plain = client.generate(model=MODEL, prompt="Hi", options=GREEDY)
    assert with_system.prompt_eval_count > plain.prompt_eval_count
    raw = client.generate(model=MODEL, prompt="Hi", raw=True, options={"num_predict": 3, "temperature": 0})
    assert raw.prompt_eval_count < plain.prompt_eval_count and raw.eval_count <= 3


def test_chat_calls_the_tool_then_answers_the_result(client):
    r = client.chat(model=MODEL, messages=ASK, tools=[TOOL], options=GREEDY)
    [call] = r.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(dict(call.function.arguments), SCHEMA)
    assert r.message.thinking == THOUGHT and not r.message.content
    history = ASK + [r.message, {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"}]
    r = client.chat(model=MODEL, messages=history, tools=[TOOL], options=GREEDY)
    assert r.message.content == ANSWER and not r.message.tool_calls


def test_chat_streamed_with_think_on_and_off(client):
    chunks = list(client.chat(model=MODEL, messages=ASK, think=True, stream=True, options=GREEDY))
    assert "".join(c.message.content for c in chunks) == ANSWER
    assert "".join(c.message.thinking or "" for c in chunks) == THOUGHT
    off = client.chat(model=MODEL, messages=ASK, think=False, options=GREEDY)
    assert off.message.content == ANSWER and not off.message.thinking
    calls = [c for c in client.chat(model=MODEL, messages=ASK, tools=[TOOL], stream=True, options=GREEDY)
             if c.message.tool_calls]
    assert [c.message.tool_calls[0].function.name for c in calls] == ["get_weather"]


@pytest.mark.parametrize("fmt", ["json", {"type": "object", "properties": {"n": {"type": "integer"}},
                                          "required": ["n"]}], ids=["json", "schema"])
def test_chat_format(client, fmt):
    r = client.chat(model=MODEL, messages=ASK, format=fmt, options=GREEDY)
    doc = json.loads(r.message.content)
    assert isinstance(doc, dict)
    if isinstance(fmt, dict):
        jsonschema.validate(doc, fmt)


def test_list_show_ps_version(client, server):
    [m] = [m for m in client.list().models if m.model == MODEL]
    assert m.details.family == "qwen3moe" and m.details.format == "gguf" and m.size > 0
    assert m.details.quantization_level == "F32" and m.details.parameter_size.endswith("M")
    info = client.show(MODEL)
    assert "<tool_call>" in info.template and {"completion", "tools", "thinking"} <= set(info.capabilities)
    assert info.modelinfo["general.architecture"] == "qwen3moe" and info.modelinfo["qwen3moe.context_length"] > 0
    client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1}, keep_alive="10m")
    [p] = client.ps().models
    assert p.model == MODEL and p.size > 0 and p.size_vram == 0 and p.context_length == 4096
    assert p.expires_at is not None and p.details.family == "qwen3moe"
    status, v = post_json(server.url, "/api/version", None)
    assert status == 200 and v["version"]


@pytest.mark.parametrize("kwargs, named", [
    ({"options": {"num_gpu": 1}}, "num_gpu"),
    ({"options": {"mirostat": 2}}, "mirostat"),
    ({"options": {"num_ctx": 8}}, "num_ctx"),
], ids=["load-option", "sampler", "ctx-too-small"])
def test_what_cannot_be_honoured_is_an_error_naming_it(client, kwargs, named):
    import ollama
    with pytest.raises(ollama.ResponseError, match=named) as e:
        client.chat(model=MODEL, messages=ASK, **kwargs)
    assert e.value.status_code == 400


def test_a_num_ctx_above_the_loaded_context_is_served_in_it(client, server):
    """Ollama does not refuse a num_ctx: it caps it at what the model holds.
    Served in the loaded context (4096 here) while the prompt fits; a prompt
    that cannot fit is refused with the numbers."""
    r = client.chat(model=MODEL, messages=ASK, options={**GREEDY, "num_ctx": 1 << 20})
    assert r.message.content == ANSWER and r.done_reason == "stop"
    import ollama
    with pytest.raises(ollama.ResponseError, match=r"the prompt \(\d+ tokens\) does not fit num_ctx 1048576 "
                                                   r"\(the model is loaded with a context of 4096 tokens\)"):
        client.generate(model=MODEL, prompt="word " * 5000, options={"num_ctx": 1 << 20})


def test_llama_index_ollama_completes_and_streams(server):
    """llama-index's Ollama integration as its users make it: with its
    defaults it asks /api/show for the model's context length and sends it as
    num_ctx; with a context_window above the loaded context it sends that
    (before, 'num_ctx ... is more than the model's context' refused it)."""
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama
    for window in (-1, 8192):        # -1: its default
        llm = Ollama(model=MODEL, base_url=server.url, request_timeout=120, temperature=0, context_window=window)
        assert llm.complete(ASK[0]["content"]).text == ANSWER
        assert "".join(c.delta or "" for c in llm.stream_complete(ASK[0]["content"])) == ANSWER
        assert llm.chat([ChatMessage(role="user", content="Hi")]).message.content == ANSWER
        assert llm.context_window >= 4096


@pytest.mark.parametrize("extra, named", [({"format": "yaml"}, "format"), ({"think": "maybe"}, "think"),
                                          ({"images": ["AAAA"]}, "images"), ({"suffix": "x"}, "suffix"),
                                          ({"template": "{{ .Prompt }}"}, "template"), ({"context": [1, 2]}, "context"),
                                          ({"stream": False, "colour": 1}, "colour")])
def test_fields_the_client_would_not_send_are_errors_too(server, extra, named):
    status, body = post_json(server.url, "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False,
                                                           "options": {}, **extra})
    assert status == 400 and named in body["error"]


def test_a_dialect_builds_the_prompt_chat_completions_builds(server):
    """The same conversation through /api/chat and /v1/chat/completions: the
    same prompt tokens and the same greedy answer. (Sent as raw JSON: the
    ollama client reorders a tool schema's keys, which is a different
    prompt.)"""
    history = ASK + [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    status, ours = post_json(server.url, "/api/chat", {"model": MODEL, "messages": history, "tools": [TOOL],
                                                       "stream": False, "options": GREEDY})
    assert status == 200
    openai_history = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": "sunny", "name": "get_weather"}]
    status, oa = post_json(server.url, "/v1/chat/completions", {"model": MODEL, "messages": openai_history,
                                                                "tools": [TOOL], "temperature": 0,
                                                                "max_tokens": 64})
    assert status == 200
    assert ours["prompt_eval_count"] == oa["usage"]["prompt_tokens"]
    assert ours["message"]["content"] == oa["choices"][0]["message"]["content"] == ANSWER


def test_shimmys_own_generate_is_unchanged(server):
    """No Ollama field: shimmy's dialect ({"response": ...}, max_tokens);
    Accept: application/x-ndjson or an Ollama field: Ollama's."""
    status, body = post_json(server.url, "/api/generate", {"model": MODEL, "prompt": "Hi", "max_tokens": 3,
                                                           "stream": False, "temperature": 0})
    assert status == 200 and body["completion_tokens"] <= 3 and "finish_reason" in body and "done_reason" not in body
    status, body = post_json(server.url, "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False,
                                                           "options": {"num_predict": 3}})
    assert status == 200 and body["done_reason"] == "length" and body["eval_count"] == 3


def test_no_prompt_loads_and_keep_alive_0_unloads(client, server):
    """Ollama's load and unload: /api/generate with a model and no prompt; the
    --model too, which loads again on demand once unloaded."""
    r = client.generate(model=MODEL, keep_alive=0)
    assert (r.done, r.done_reason, r.response) == (True, "unload", "")
    deadline = time.monotonic() + 30
    while client.ps().models and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.ps().models == []
    assert client.generate(model=MODEL, keep_alive=0).done_reason == "unload" and client.ps().models == []  # not loaded
    r = client.generate(model=MODEL, keep_alive="1m")
    assert (r.done, r.done_reason) == (True, "load") and [p.model for p in client.ps().models] == [MODEL]
    assert client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1}).done
