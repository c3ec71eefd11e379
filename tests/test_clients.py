"""The client libraries people point at a local server (openai,
langchain-openai, instructor, litellm, openai-agents), each driving
`shimmy-py serve` and, with the same calls, llama.cpp's own `llama-server
--jinja` on the same model: every call must work on both.

The model is `synth --behaviour tool-caller` (shimmy_py/synthetic/
behaviours.py): a Qwen3-MoE whose weights were set by hand, not trained,
so that it thinks ("Checking weather"), calls a tool when tools are
offered and no tool result is in the conversation yet, and otherwise
answers "It is sunny.". Flags in its residual stream come from attention
heads that look for the <tool_call> tag (the system message that lists
tools carries it) and the <tool_response> tag (a tool result); the tool
grammar makes the call's arguments valid for the tool's schema.
"""
from __future__ import annotations

import asyncio
import json
import os

import jsonschema
import pytest
from pydantic import BaseModel
from support.servers import config

from shimmy_py.native import install
from shimmy_py.procs import ServerProcess, free_port
from shimmy_py.serving.server import Server
from shimmy_py.synthetic.behaviours import tool_caller

MODEL = "tool-caller"
ANSWER, THOUGHT = "It is sunny.", "Checking weather"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
          "required": ["city"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": SCHEMA}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Weather(BaseModel):
    city: str
    celsius: int
    sunny: bool


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tool_caller(tmp_path_factory.mktemp("clients") / f"{MODEL}.gguf")


@pytest.fixture(scope="module", params=["shimmy-py", "llama-server"])
def server(request, model_path):
    """The base URL of one server: ours, or llama-server --jinja (the peer)."""
    if request.param == "shimmy-py":
        with Server(config(model_path, ctx=4096, parallel=2)).start() as srv:
            yield srv.url
        return
    port = free_port()
    argv = [str(install.tool("llama-server")), "-m", str(model_path), "-c", "8192", "-np", "2", "-t", "2",
            "--host", "127.0.0.1", "--port", str(port), "--no-webui", "--jinja", "--alias", MODEL]
    with ServerProcess(argv, port, timeout=120) as srv:
        yield srv.url


def openai_client(url: str):
    from openai import OpenAI
    return OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


def assert_call(name: str, arguments: str) -> dict:
    assert name == "get_weather"
    args = json.loads(arguments)
    jsonschema.validate(args, SCHEMA)
    return args


# --- openai ---------------------------------------------------------------------------------------


def test_openai_plain_and_streamed_answers_keep_thinking_apart(server):
    client = openai_client(server)
    r = client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_completion_tokens=32)
    msg = r.choices[0].message
    assert (msg.content, r.choices[0].finish_reason) == (ANSWER, "stop")
    assert msg.model_extra["reasoning_content"] == THOUGHT
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=32,
                                                 stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == ANSWER
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == THOUGHT
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices


def test_openai_max_completion_tokens_is_honoured(server):
    r = openai_client(server).chat.completions.create(model=MODEL, messages=ASK, temperature=0,
                                                      max_completion_tokens=2)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2


def test_openai_tool_call_then_tool_result_then_answer(server):
    client = openai_client(server)
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[TOOL], temperature=0, max_tokens=64)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    [call] = choice.message.tool_calls
    assert call.id and call.type == "function"
    assert_call(call.function.name, call.function.arguments)
    history = ASK + [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    r = client.chat.completions.create(model=MODEL, messages=history, tools=[TOOL], temperature=0, max_tokens=64)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (ANSWER, "stop")


def test_openai_streamed_tool_call_assembles(server):
    stream = openai_client(server).chat.completions.create(model=MODEL, messages=ASK, tools=[TOOL], temperature=0,
                                                           max_tokens=64, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for d in choice.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += d.id or ""
                call["name"] += (d.function.name or "") if d.function else ""
                call["arguments"] += (d.function.arguments or "") if d.function else ""
    assert finish == "tool_calls" and list(calls) == [0] and calls[0]["id"]
    assert_call(calls[0]["name"], calls[0]["arguments"])


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_openai_forced_tool_choice(server, choice):
    r = openai_client(server).chat.completions.create(model=MODEL, messages=ASK, tools=[TOOL], tool_choice=choice,
                                                      temperature=0, max_tokens=64)
    [call] = r.choices[0].message.tool_calls
    assert_call(call.function.name, call.function.arguments)


def test_openai_structured_output_parses_into_the_model(server):
    r = openai_client(server).chat.completions.parse(model=MODEL, messages=ASK, response_format=Weather,
                                                     temperature=0, max_tokens=96)
    assert isinstance(r.choices[0].message.parsed, Weather)


def test_openai_json_object_mode(server):
    r = openai_client(server).chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=64,
                                                      response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_openai_optional_fields_clients_send_do_not_break_a_request(server):
    r = openai_client(server).chat.completions.create(
        model=MODEL, messages=ASK, temperature=0, max_tokens=64, user="someone", metadata={"k": "v"}, store=False,
        parallel_tool_calls=True, tools=[TOOL], n=1, top_p=1.0, seed=3)
    assert r.choices[0].message.tool_calls


# --- openai: the Responses API -------------------------------------------------------------------


def test_openai_responses_whole_and_streamed(server, request):
    client = openai_client(server)
    r = client.responses.create(model=MODEL, input=ASK[0]["content"], temperature=0, max_output_tokens=64)
    assert r.output_text == ANSWER and r.status == "completed"
    [reasoning] = [i for i in r.output if i.type == "reasoning"]
    assert "".join(c.text for c in reasoning.content or []) == THOUGHT
    events = list(client.responses.create(model=MODEL, input=ASK[0]["content"], temperature=0,
                                          max_output_tokens=64, stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == ANSWER and events[-1].response.usage.output_tokens > 0
    short = client.responses.create(model=MODEL, input="Hi", temperature=0, max_output_tokens=2)
    assert short.usage.output_tokens == 2
    if request.node.callspec.params["server"] == "shimmy-py":     # llama-server says "completed" here
        assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"


def test_openai_responses_function_call_and_its_output(server):
    client = openai_client(server)
    tool = {"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": SCHEMA}
    r = client.responses.create(model=MODEL, input=ASK, tools=[tool], temperature=0, max_output_tokens=64)
    [call] = [i for i in r.output if i.type == "function_call"]
    assert_call(call.name, call.arguments)
    follow = ASK + [i.model_dump(exclude_none=True) for i in r.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    r = client.responses.create(model=MODEL, input=follow, tools=[tool], temperature=0, max_output_tokens=64)
    assert r.output_text == ANSWER


# --- langchain-openai -----------------------------------------------------------------------------


def chat_model(url: str, **kw):
    from langchain_openai import ChatOpenAI
    return ChatOpenAI(model=MODEL, base_url=url + "/v1", api_key="none", temperature=0, max_retries=0,
                      timeout=120, **kw)


def test_langchain_invoke_stream_and_max_tokens(server):
    llm = chat_model(server, max_tokens=32)
    assert llm.invoke(ASK[0]["content"]).content == ANSWER
    assert "".join(chunk.content for chunk in llm.stream(ASK[0]["content"])) == ANSWER
    short = chat_model(server, max_tokens=2).invoke(ASK[0]["content"])
    assert short.response_metadata["finish_reason"] == "length"


def test_langchain_bind_tools(server):
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    msg = chat_model(server, max_tokens=64).bind_tools([get_weather]).invoke(ASK[0]["content"])
    [call] = msg.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(server, method):
    out = chat_model(server, max_tokens=96).with_structured_output(Weather, method=method).invoke(
        "Weather in Paris, as JSON with city, celsius and sunny")
    assert isinstance(out, Weather)


# Modes that put the schema only into the prompt (response_format json_object,
# or none): a model whose weights were set by hand cannot read it, so the
# reply is a JSON object without the fields (or plain text) and the client's
# validation refuses it, on llama-server alike. What these show: the request
# is accepted and the reply reaches the client's parser.
def test_langchain_json_mode_reaches_the_clients_validation(server):
    from langchain_core.exceptions import OutputParserException
    with pytest.raises(OutputParserException, match="Field required"):
        chat_model(server, max_tokens=96).with_structured_output(Weather, method="json_mode").invoke(
            "Weather in Paris, as JSON with city, celsius and sunny")


# --- instructor -----------------------------------------------------------------------------------


def instructor_weather(url: str, mode: str):
    import instructor
    client = instructor.from_openai(openai_client(url), mode=getattr(instructor.Mode, mode))
    return client.chat.completions.create(model=MODEL, response_model=Weather, messages=ASK, max_retries=0,
                                          temperature=0, max_tokens=128)


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_instructor_modes(server, mode):
    assert isinstance(instructor_weather(server, mode), Weather)


@pytest.mark.parametrize("mode", ["JSON", "MD_JSON"])
def test_instructor_prompt_only_modes_reach_the_clients_validation(server, mode):
    from instructor.core.exceptions import InstructorRetryException
    with pytest.raises(InstructorRetryException, match="validation error"):
        instructor_weather(server, mode)


# --- litellm --------------------------------------------------------------------------------------


def test_litellm_completion_tools_and_stream(server):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")    # no fetch of the price list
    import litellm
    common = {"model": f"openai/{MODEL}", "api_base": server + "/v1", "api_key": "none", "temperature": 0,
              "max_tokens": 64}
    r = litellm.completion(messages=ASK, **common)
    assert r.choices[0].message.content == ANSWER
    r = litellm.completion(messages=ASK, tools=[TOOL], **common)
    [call] = r.choices[0].message.tool_calls
    assert_call(call.function.name, call.function.arguments)
    text = "".join(c.choices[0].delta.content or "" for c in litellm.completion(messages=ASK, stream=True, **common))
    assert text == ANSWER


# --- openai-agents --------------------------------------------------------------------------------


def run_weather_agent(server, model_class: str):
    """An agent with one function tool on `model_class` (one of the SDK's model
    classes): the tool calls it made, and the agent's final output."""
    import agents
    from openai import AsyncOpenAI
    agents.set_tracing_disabled(True)
    ran = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return "sunny, 21 C"

    model = getattr(agents, model_class)(model=MODEL, openai_client=AsyncOpenAI(base_url=server + "/v1",
                                                                              api_key="none", max_retries=0))
    agent = agents.Agent(name="weather", instructions="Answer with the weather.", tools=[get_weather], model=model,
                         model_settings=agents.ModelSettings(temperature=0, max_tokens=64))
    result = asyncio.run(agents.Runner.run(agent, ASK[0]["content"], max_turns=4))
    return ran, result.final_output


def test_openai_agents_run_a_function_tool(server):
    """An agent with one function tool: the model calls it, the SDK runs it
    and sends the result back, the model answers."""
    ran, final = run_weather_agent(server, "OpenAIChatCompletionsModel")
    assert len(ran) == 1 and final == ANSWER


def test_openai_agents_over_the_responses_api(server):
    """The SDK's default model class speaks the Responses API."""
    ran, final = run_weather_agent(server, "OpenAIResponsesModel")
    assert len(ran) == 1 and final == ANSWER
