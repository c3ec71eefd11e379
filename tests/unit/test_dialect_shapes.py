"""Each dialect's answers shaped without a server: the whole answer and the
stream of one completion (thinking, text, a tool call), each validated by the
official client library's own types, and the usage counted once per stream
(clients add up every event's usage)."""
from __future__ import annotations

import json
import time

from pydantic import TypeAdapter

from shimmy_py.generation.loop import Completion
from shimmy_py.generation.tool_formats import ToolCall
from shimmy_py.serving.dialects.anthropic import AnthropicShapes
from shimmy_py.serving.dialects.ollama import OllamaShapes
from shimmy_py.serving.dialects.responses import ResponsesShapes
from shimmy_py.serving.dialects.streaming import Clock

CALL = ToolCall("get_weather", '{"city": "Paris"}', "call_1")
DONE = Completion(text="It is sunny.", reasoning="Checking weather", finish_reason="stop", prompt_tokens=11,
                  completion_tokens=9, ttft_s=0.05, tokens_per_s=40.0)
CALLED = Completion(text="", reasoning="Checking weather", tool_calls=[CALL], finish_reason="tool_calls",
                    prompt_tokens=11, completion_tokens=12, ttft_s=0.05, tokens_per_s=40.0)


def events(shapes, c: Completion) -> list:
    pieces = [("reasoning", c.reasoning), *([("content", c.text)] if c.text else []),
              *[("tool_call", call) for call in c.tool_calls]]
    out = shapes.opening() + [e for kind, value in pieces for e in shapes.piece(kind, value)] + shapes.closing(c)
    return [(e[0], json.loads(e[1])) if isinstance(e, tuple) else json.loads(e) for e in out if e != "[DONE]"]


def test_ollama_lines_are_the_clients_chat_responses():
    from ollama import ChatResponse, GenerateResponse
    for c in (DONE, CALLED):
        whole = OllamaShapes("m", True, Clock(time.monotonic(), 0.0)).final(c)
        r = ChatResponse.model_validate(whole)
        assert r.message.thinking == "Checking weather" and r.done and r.eval_count == c.completion_tokens
        lines = events(OllamaShapes("m", True, Clock(time.monotonic(), 0.0)), c)
        parsed = [ChatResponse.model_validate(line) for line in lines]
        assert [p.done for p in parsed].count(True) == 1 and parsed[-1].done
        assert [p.eval_count for p in parsed if p.eval_count] == [c.completion_tokens]      # counted once
        assert "".join(p.message.thinking or "" for p in parsed) == "Checking weather"
    calls = [p.message.tool_calls for p in parsed if p.message.tool_calls]
    assert calls[0][0].function.name == "get_weather" and calls[0][0].function.arguments == {"city": "Paris"}
    g = GenerateResponse.model_validate(OllamaShapes("m", False, Clock(time.monotonic(), 0.0)).final(DONE))
    assert g.response == "It is sunny." and g.thinking == "Checking weather"


def test_anthropic_message_and_events_are_the_clients_types():
    from anthropic.types import Message, RawMessageStreamEvent
    m = Message.model_validate(AnthropicShapes("m").final(CALLED))
    assert [b.type for b in m.content] == ["thinking", "tool_use"] and m.stop_reason == "tool_use"
    assert m.content[1].input == {"city": "Paris"} and m.usage.output_tokens == 12
    stream = events(AnthropicShapes("m"), DONE)
    adapter = TypeAdapter(RawMessageStreamEvent)
    parsed = [adapter.validate_python(data) for _, data in stream]
    assert [e.type for e in parsed][0] == "message_start" and parsed[-1].type == "message_stop"
    assert all(name == data["type"] for name, data in stream)                    # the SSE event names
    output = [e.message.usage.output_tokens if e.type == "message_start" else e.usage.output_tokens
              for e in parsed if e.type in ("message_start", "message_delta")]
    assert sum(output) == DONE.completion_tokens                                    # counted once


def test_responses_response_and_events_are_the_clients_types():
    from openai.types.responses import Response, ResponseStreamEvent
    body = {"input": "Hi"}
    r = Response.model_validate(ResponsesShapes("m", body).final(CALLED))
    assert [o.type for o in r.output] == ["reasoning", "function_call"] and r.usage.output_tokens == 12
    adapter = TypeAdapter(ResponseStreamEvent)
    parsed = [adapter.validate_python(data) for _, data in events(ResponsesShapes("m", body), DONE)]
    assert parsed[0].type == "response.created" and parsed[-1].type == "response.completed"
    assert [p.sequence_number for p in parsed] == list(range(len(parsed)))
    assert parsed[-1].response.output_text == "It is sunny."
    assert [p.response.usage.output_tokens for p in parsed if getattr(p, "response", None) is not None
            and p.response.usage] == [DONE.completion_tokens]                      # counted once
