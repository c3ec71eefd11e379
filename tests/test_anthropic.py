"""Anthropic's Messages API, driven by the official `anthropic` client:
messages whole and streamed (text, thinking, tool use), a tool result turn,
stop sequences, count_tokens, the x-api-key header and errors in
Anthropic's shape; and the llama-server utility routes (/tokenize,
/detokenize, /apply-template).

The model is `synth --behaviour tool-caller` (see tests/test_clients.py):
it thinks "Checking weather", calls the offered tool, and answers "It is
sunny." after a tool result or when no tool is offered.
"""
from __future__ import annotations

import jsonschema
import pytest
from support.http import post_json
from support.servers import config

from shimmy_py.serving.server import Server
from shimmy_py.synthetic.behaviours import tool_caller

MODEL = "tool-caller"
KEY = "sk-local-test"
ANSWER, THOUGHT = "It is sunny.", "Checking weather"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"name": "get_weather", "description": "Weather in a city", "input_schema": SCHEMA}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tool_caller(tmp_path_factory.mktemp("anthropic") / f"{MODEL}.gguf")
    with Server(config(path, ctx=4096, parallel=2, api_key=KEY)).start() as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    import anthropic
    c = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)
    yield c
    c.close()


def test_message_with_thinking_and_text(client):
    r = client.messages.create(model=MODEL, max_tokens=64, messages=ASK)
    assert [b.type for b in r.content] == ["thinking", "text"]
    assert (r.content[0].thinking, r.content[1].text, r.stop_reason) == (THOUGHT, ANSWER, "end_turn")
    assert r.usage.input_tokens > 5 and r.usage.output_tokens > 0 and r.role == "assistant"
    short = client.messages.create(model=MODEL, max_tokens=2, messages=ASK)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2


def test_stream_events_accumulate_into_the_message(client):
    with client.messages.stream(model=MODEL, max_tokens=64, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert [b.type for b in final.content] == ["thinking", "text"] and final.content[0].thinking == THOUGHT
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0 and final.usage.input_tokens > 5


def test_tool_use_then_tool_result(client):
    r = client.messages.create(model=MODEL, max_tokens=64, messages=ASK, tools=[TOOL])
    assert r.stop_reason == "tool_use"
    [use] = [b for b in r.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.id.startswith("toolu_")
    jsonschema.validate(use.input, SCHEMA)
    history = ASK + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": "sunny, 21 C"}]}]
    r = client.messages.create(model=MODEL, max_tokens=64, messages=history, tools=[TOOL])
    assert r.stop_reason == "end_turn" and r.content[-1].text == ANSWER


def test_streamed_tool_use_and_forced_choice(client):
    with client.messages.stream(model=MODEL, max_tokens=64, messages=ASK, tools=[TOOL],
                                tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        final = stream.get_final_message()
    [use] = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather" and final.stop_reason == "tool_use"
    jsonschema.validate(use.input, SCHEMA)


def test_stop_sequence_system_and_count_tokens(client):
    r = client.messages.create(model=MODEL, max_tokens=64, messages=ASK, stop_sequences=[" sunny"])
    assert (r.stop_reason, r.stop_sequence, r.content[-1].text) == ("stop_sequence", " sunny", "It is")
    plain = client.messages.count_tokens(model=MODEL, messages=ASK).input_tokens
    with_system = client.messages.count_tokens(model=MODEL, messages=ASK, system="Be brief.").input_tokens
    with_tools = client.messages.count_tokens(model=MODEL, messages=ASK, tools=[TOOL]).input_tokens
    assert plain < with_system and plain < with_tools
    assert client.messages.create(model=MODEL, max_tokens=1, messages=ASK).usage.input_tokens == plain


def test_errors_in_anthropics_shape(server, client):
    import anthropic
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}])
    assert e.value.body["error"]["type"] == "invalid_request_error" and "image" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0).messages.create(
            model=MODEL, max_tokens=8, messages=ASK)
    status, body = post_json(server.url, "/v1/messages", {"model": MODEL, "messages": ASK},
                             headers={"x-api-key": KEY})
    assert status == 400 and body["type"] == "error" and "max_tokens" in body["error"]["message"]


def test_llama_server_utility_routes(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    status, tok = post_json(server.url, "/tokenize", {"content": "Hello<|im_end|>", "with_pieces": True},
                            headers=auth)
    assert status == 200 and tok["tokens"][-1] == {"id": 151645, "piece": "<|im_end|>"}
    status, back = post_json(server.url, "/detokenize", {"tokens": [t["id"] for t in tok["tokens"][:-1]]},
                             headers=auth)
    assert status == 200 and back["content"] == "Hello"
    status, tmpl = post_json(server.url, "/apply-template", {"messages": ASK}, headers=auth)
    assert status == 200 and tmpl["prompt"].endswith("<|im_start|>assistant\n") and ASK[0]["content"] in tmpl["prompt"]
    status, err = post_json(server.url, "/detokenize", {"tokens": [10**9]}, headers=auth)
    assert status == 400


def test_structured_output_config(client):
    import json
    r = client.messages.create(model=MODEL, max_tokens=64, messages=ASK,
                               output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    jsonschema.validate(json.loads(r.content[-1].text), SCHEMA)
