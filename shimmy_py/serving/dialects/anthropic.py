"""Anthropic's Messages API, as the official `anthropic` client and the
coding agents that use it speak it: POST /v1/messages (system, content
blocks, max_tokens, stop_sequences, tools and tool_choice, thinking,
output_config's format and effort; the sampling fields older clients send;
streamed as named SSE events message_start, content_block_start /
_delta / _stop, message_delta, message_stop) and /v1/messages/count_tokens.

A request is read by its table (jobs.py), so the prompt is the one
/v1/chat/completions builds for the same conversation: text blocks join,
tool_use blocks become an assistant's tool calls, tool_result blocks become
tool messages, thinking blocks the reasoning an earlier turn had. Images,
documents and server-side tools are a 400 naming them. Errors take Anthropic's shape: {"type": "error", "error": {...}}.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from ..http.app import App
from ..http.errors import ApiError, anthropic_error, bad
from ..http.exchange import Request, Response
from ..worker import messages as m
from . import chat_fields as c
from . import values as v
from .chat_fields import text_parts
from .jobs import Field, GenRequest, Shape, build, read
from .known import known_fields
from .streaming import answer

STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


def _message(msg, i: int) -> list[dict]:
    """One Anthropic message as the server's chat messages (tool results
    first, as separate tool messages)."""
    where = f"messages[{i}]"
    if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
        raise bad(f"{where} must be an object with role \"user\" or \"assistant\"")
    known_fields(msg, {"role", "content"}, where)
    role, content = msg["role"], msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad(f"{where}.content must be a string or a list of content blocks")
    texts, calls, results, thinking = [], [], [], []
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        at = f"{where}.content[{j}]"
        if kind == "text":
            texts.append(text_parts([b], at))
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(b.get("name"), str) or not isinstance(b.get("input"), dict):
                raise bad(f"{at}: a tool_use block has a name and an input object")
            calls.append({"id": str(b.get("id") or f"toolu_{j}"), "type": "function",
                          "function": {"name": b["name"], "arguments": json.dumps(b["input"], ensure_ascii=False)}})
        elif kind == "tool_result" and role == "user":
            text = text_parts(b.get("content", ""), f"{at}.content")
            results.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")),
                            "content": ("Error: " + text) if b.get("is_error") else text})
        elif kind == "thinking" and role == "assistant":
            thinking.append(str(b.get("thinking", "")))
        elif kind == "redacted_thinking" and role == "assistant":
            continue                       # encrypted by Anthropic: nothing a local model can read
        else:
            raise bad(f"{at} is a {kind!r} block: not supported here (text, tool_use, tool_result, thinking)")
    out = list(results)
    if texts or calls or thinking or not results:
        turn: dict[str, Any] = {"role": role, "content": "".join(texts) if texts or not calls else None}
        if calls:
            turn["tool_calls"] = calls
        if thinking:
            turn["reasoning_content"] = "".join(thinking)
        out.append(turn)
    return out


def _messages(raw, name: str) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise bad(f"'{name}' must be a non-empty list", name)
    return c.messages([out for i, msg in enumerate(raw) for out in _message(msg, i)], name)


def _tools(tools, name: str) -> tuple:
    if not isinstance(tools, list):
        raise bad(f"'{name}' must be a list", name)
    specs = []
    for k, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise bad(f"{name}[{k}] must be an object with a name")
        if t.get("type") not in (None, "custom"):
            raise bad(f"{name}[{k}] is a {t['type']!r} tool: server-side tools are not supported here")
        specs.append({"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                       "parameters": t.get("input_schema") or {"type": "object"}}})
    return c.tools(specs, name)


def _tool_choice(choice, name: str) -> tuple:
    """(tool choice, parallel tool calls)."""
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise bad(f"'{name}' must be {{\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}}", name)
    kind = choice["type"]
    if kind == "tool" and not isinstance(choice.get("name"), str):
        raise bad(f"'{name}' of type \"tool\" names the tool: {{\"type\": \"tool\", \"name\": ...}}", name)
    return ({"auto": "auto", "any": "required", "none": "none"}.get(kind) or choice["name"],
            False if choice.get("disable_parallel_tool_use") else None)


def _thinking(thinking, name: str) -> bool | None:
    """Whether the template thinks: "disabled" turns it off (enabled and adaptive: the model's way)."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("enabled", "adaptive"):
        return None
    if kind == "disabled":
        return False
    raise bad(f"'{name}' must be {{\"type\": \"enabled\" | \"disabled\" | \"adaptive\", ...}}", name)


def _output_config(config, name: str) -> tuple:
    """(grammar, effort): format (a JSON schema the answer must follow) and effort."""
    if not isinstance(config, dict) or set(config) - {"format", "effort"}:
        raise bad(f"'{name}' takes format and effort", name)
    fmt, effort = config.get("format"), config.get("effort")
    grammar = None
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise bad(f"'{name}.format' must be {{\"type\": \"json_schema\", \"schema\": {{...}}}}", name)
        grammar = c.json_schema(fmt["schema"], f"{name}.format.schema")
    if effort is not None:
        effort = {"xhigh": "high", "max": "high"}.get(effort, effort)
        effort = c.reasoning_effort(effort, f"{name}.effort")[1]
    return grammar, effort


COUNT = {   # /v1/messages/count_tokens: what makes the prompt
    "model": Field("model", v.text), "messages": Field("messages", _messages),
    "system": Field("system", lambda value, name: text_parts(value, f"'{name}'")),
    "tools": Field("tools", _tools), "tool_choice": Field(("tool_choice", "parallel_tool_calls"), _tool_choice),
    "thinking": Field("thinking", _thinking), "cache_control": Field(None),
    "output_config": Field(("grammar", "reasoning_effort"), _output_config),
}
TABLE = {**COUNT, "max_tokens": Field("max_tokens", v.positive), "stop_sequences": Field("stop", v.stops),
         "stream": Field("stream", v.boolean), "metadata": Field(None), "service_tier": Field(None),
         **{key: Field(key, v.SAMPLED[key]) for key in ("temperature", "top_p", "top_k")}}
SHAPE = Shape("chat", "messages")


def request(body: Any) -> GenRequest:
    f = read(body, TABLE)
    if "max_tokens" not in f.values:
        raise bad("'max_tokens' is required: a positive integer", "max_tokens")
    return build(f, SHAPE)


class AnthropicShapes:
    """One message, whole or as Anthropic's named stream events."""
    framing = "sse"

    def __init__(self, model: str):
        self.model = model
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.block: str | None = None      # the open block's kind
        self.index = -1

    def _blocks(self, c) -> list[dict]:
        out = []
        if c.reasoning:
            out.append({"type": "thinking", "thinking": c.reasoning, "signature": ""})
        if c.text or not c.tool_calls:
            out.append({"type": "text", "text": c.text})
        out += [self._tool_use(call) for call in c.tool_calls]
        return out

    @staticmethod
    def _tool_use(call) -> dict:
        return {"type": "tool_use", "id": "toolu_" + call.id.removeprefix("call_"), "name": call.name,
                "input": json.loads(call.arguments)}

    @staticmethod
    def stop(c) -> dict:
        reason = "stop_sequence" if c.stop_word else STOP_REASONS.get(c.finish_reason, "end_turn")
        return {"stop_reason": reason, "stop_sequence": c.stop_word or None}

    @staticmethod
    def usage(c) -> dict:
        return {"input_tokens": c.prompt_tokens, "output_tokens": c.completion_tokens,
                "cache_read_input_tokens": c.cached_tokens}

    def final(self, c) -> dict:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": self._blocks(c), **self.stop(c), "usage": self.usage(c)}

    @staticmethod
    def _event(name: str, **data) -> tuple:
        return (name, json.dumps({"type": name, **data}, ensure_ascii=False))

    def opening(self) -> list:
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [self._event("message_start", message=message)]

    def _open(self, kind: str, block: dict) -> list:
        out = self._close()
        self.index += 1
        self.block = kind
        return out + [self._event("content_block_start", index=self.index, content_block=block)]

    def _close(self) -> list:
        if self.block is None:
            return []
        self.block = None
        return [self._event("content_block_stop", index=self.index)]

    def piece(self, kind: str, value) -> list:
        out = []
        if kind == "reasoning":
            if self.block != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._event("content_block_delta", index=self.index,
                                   delta={"type": "thinking_delta", "thinking": value}))
        elif kind == "content":
            if self.block != "text":
                out += self._open("text", {"type": "text", "text": ""})
            out.append(self._event("content_block_delta", index=self.index,
                                   delta={"type": "text_delta", "text": value}))
        elif kind == "tool_call":
            use = self._tool_use(value)
            out += self._open("tool_use", {**use, "input": {}})
            out.append(self._event("content_block_delta", index=self.index,
                                   delta={"type": "input_json_delta", "partial_json": value.arguments}))
            out += self._close()
        return out

    def closing(self, c) -> list:
        out = self._close()
        if self.index < 0:                 # no block at all: an empty text one, as Anthropic sends
            out += self._open("text", {"type": "text", "text": ""}) + self._close()
        return out + [self._event("message_delta", delta=self.stop(c), usage=self.usage(c)),
                      self._event("message_stop")]

    def error(self, status: int, message: str, kind: str) -> list:
        return [("error", json.dumps(anthropic_error(ApiError(status, message, kind))))]


def messages(app: App, req: Request) -> Response:
    gr = request(req.json())
    return answer(app, req, gr, lambda name, gr, clock: AnthropicShapes(name))


def count_tokens(app: App, req: Request) -> Response:
    gr = build(read(req.json(), COUNT), SHAPE)
    with app.state.lease(gr.model) as lease:
        rendered = lease.resident.supervisor.call(m.RenderChat(gr.job))
    return Response.json(200, {"input_tokens": rendered["tokens"]})
