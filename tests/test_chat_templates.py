"""Chat prompts as llama-server makes them: each family's real template
(Jinja, as the GGUF carries it) gives the text llama.cpp's own llama-server
(its default --jinja path) returns from /apply-template, for the same
messages: multi-turn, with a system message (merged into the user turn where
the template has no system role, as llama.cpp does), and a developer message."""
import json
import urllib.error
import urllib.request

import pytest

from shimmy_py import Model
from shimmy_py.native import install
from shimmy_py.procs import ServerProcess, free_port
from shimmy_py.synthetic import families

CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Tell me more"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hi"}],
]


def llama_server_prompts(path, chats, extra: dict | None = None) -> list[str]:
    port = free_port()
    argv = [str(install.tool("llama-server")), "-m", str(path), "-c", "256", "-t", "2", "--host", "127.0.0.1",
            "--port", str(port), "--no-webui"]
    out = []
    with ServerProcess(argv, port, timeout=120) as srv:
        for messages in chats:
            body = {"messages": messages, **(extra or {})}
            req = urllib.request.Request(srv.url + "/apply-template", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    out.append(json.loads(r.read())["prompt"])
            except urllib.error.HTTPError as e:           # a history the template refuses
                out.append(f"HTTP {e.code}")
    return out


@pytest.mark.parametrize("family", sorted(families.FAMILIES))
def test_chat_prompts_equal_llama_servers(tmp_path, family):
    path = families.write(tmp_path / f"{family}.gguf", family, seed=1)
    theirs = llama_server_prompts(path, CHATS)
    with Model(path, n_ctx=256, n_threads=2, vocab_only=True) as m:
        ours = [m.apply_chat_template(messages) for messages in CHATS]
    assert ours == theirs


@pytest.mark.parametrize("family, extra, kwargs", [
    ("qwen3moe", {"chat_template_kwargs": {"enable_thinking": False}}, {"enable_thinking": False}),
    ("gpt-oss", {"reasoning_effort": "high"}, {"reasoning_effort": "high"}),
    ("deepseek2", {"reasoning_effort": "none"}, {"enable_thinking": False}),
])
def test_template_variables_as_llama_server_takes_them(tmp_path, family, extra, kwargs):
    """chat_template_kwargs and reasoning_effort, as the request fields
    llama-server takes and as parse_request turns them into variables."""
    from shimmy_py.serving.dialects.parse import parse_request
    path = families.write(tmp_path / f"{family}.gguf", family, seed=1)
    [theirs] = llama_server_prompts(path, CHATS[:1], extra)
    assert parse_request({"messages": CHATS[0], **extra}, "chat").job.chat.template_kwargs == kwargs
    with Model(path, n_ctx=256, n_threads=2, vocab_only=True) as m:
        ours = m.apply_chat_template(CHATS[0], template_kwargs=kwargs)
        assert ours == theirs and ours != m.apply_chat_template(CHATS[0])


def test_template_variables_over_http(tmp_path):
    """/v1/chat/completions takes chat_template_kwargs (Qwen3's thinking off
    adds its empty think block to the prompt); a wrong type is a 400."""
    from support.http import post_json
    from support.servers import config

    from shimmy_py.serving.server import Server
    path = families.write(tmp_path / "qwen3moe.gguf", "qwen3moe", seed=1)
    body = {"messages": CHATS[0], "max_tokens": 2, "temperature": 0}
    with Server(config(path, ctx=256, parallel=1)).start() as srv:
        status, plain = post_json(srv.url, "/v1/chat/completions", body)
        assert status == 200
        status, off = post_json(srv.url, "/v1/chat/completions",
                                {**body, "chat_template_kwargs": {"enable_thinking": False}})
        assert status == 200 and off["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
        status, bad = post_json(srv.url, "/v1/chat/completions",
                                {**body, "chat_template_kwargs": {"enable_thinking": "no"}})
        assert status == 400 and "enable_thinking" in bad["error"]["message"]


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string", "description": "The city"}},
                                               "required": ["city"]}}}]
TOOL_CHATS = [
    [{"role": "user", "content": "Weather in Paris?"}],
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": None, "tool_calls": [
         {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
     {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}],
]


@pytest.mark.parametrize("family", sorted(families.FAMILIES))
def test_prompts_with_tools_and_tool_turns_equal_llama_servers(tmp_path, family):
    """The tools go through the template as llama-server passes them, and a
    tool call (content null, arguments a JSON string) and its result are
    rendered as llama-server renders them. A template that cannot describe
    tools (DeepSeekMoE's, Qwen2-MoE's ChatML, Mixtral's) gets the generic
    format's system message instead, where llama-server drops the tools: the
    model could not know them."""
    from shimmy_py.generation.chatting import ChatOptions, prepare
    from shimmy_py.generation.sampling import SamplingParams
    from shimmy_py.generation.tool_formats import Generic, as_tool, detect
    path = families.write(tmp_path / f"{family}.gguf", family, seed=1)
    theirs = llama_server_prompts(path, TOOL_CHATS, {"tools": TOOLS})
    with Model(path, vocab_only=True) as m:
        options = ChatOptions(tuple(as_tool(t) for t in TOOLS))
        ours = [prepare(m.vocab, chat, options, SamplingParams()).prompt for chat in TOOL_CHATS]
        generic = detect(m.vocab.template_text()) is Generic
    if not generic:
        assert ours == theirs
        return
    # llama-server drops the tools here (or, for Mixtral's strict template,
    # refuses the history): ours carry the tools in a system message, the
    # call as the JSON the model is asked for, the result as a user turn.
    assert all("get_weather" in p and '"tool_calls"' in p for p in ours)
    assert '"city": "Paris"' in ours[1] and '"tool_response"' in ours[1] and "sunny, 21 C" in ours[1]
    assert "get_weather" not in theirs[0]
