"""Anthropic's Messages API, as the official `anthropic` client and the
coding agents that use it speak it: POST /v1/messages (system, content
blocks, max_tokens, stop_sequences, tools and tool_choice, thinking,
output_config's format and effort; the sampling fields older clients send;
streamed as named SSE events message_start, content_block_start /
_delta / _stop, message_delta, message_stop) and /v1/messages/count_tokens.

A request becomes the server's own chat request (parse.parse_request), so the
prompt is the one /v1/chat/completions builds for the same conversation:
text blocks join, tool_use blocks become an assistant's tool calls,
tool_result blocks become tool messages, thinking blocks the reasoning an
earlier turn had. Images, documents and server-side tools are a 400 naming
them. Errors take Anthropic's shape: {"type": "error", "error": {...}}.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from ..http.app import App
from ..http.errors import ApiError, anthropic_error, bad
from ..http.exchange import Request, Response
from ..worker import messages as m
from .chat_fields import text_parts
from .known import known_fields
from .parse import parse_request
from .streaming import answer

KNOWN = {"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature", "top_p", "top_k",
         "tools", "tool_choice", "thinking", "metadata", "service_tier", "output_config", "cache_control"}
COUNT_KNOWN = {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control"}
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


def _tools(body: dict) -> dict:
    tools = body.get("tools")
    out: dict[str, Any] = {}
    if tools:
        if not isinstance(tools, list):
            raise bad("'tools' must be a list")
        specs = []
        for k, t in enumerate(tools):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise bad(f"tools[{k}] must be an object with a name")
            if t.get("type") not in (None, "custom"):
                raise bad(f"tools[{k}] is a {t['type']!r} tool: server-side tools are not supported here")
            specs.append({"type": "function", "function": {"name": t["name"],
                                                           "description": t.get("description", ""),
                                                           "parameters": t.get("input_schema") or {"type": "object"}}})
        out["tools"] = specs
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise bad("'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}")
        kind = choice["type"]
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(kind) or \
            {"type": "function", "function": {"name": choice.get("name")}}
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    return out


def _thinking(body: dict) -> dict:
    thinking = body.get("thinking")
    if thinking is None:
        return {}
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("enabled", "adaptive"):
        return {}
    if kind == "disabled":
        return {"chat_template_kwargs": {"enable_thinking": False}}
    raise bad("'thinking' must be {\"type\": \"enabled\" | \"disabled\" | \"adaptive\", ...}")


def _output_config(body: dict) -> dict:
    """output_config: format (a JSON schema the answer must follow) and effort."""
    config = body.get("output_config")
    if config is None:
        return {}
    if not isinstance(config, dict) or set(config) - {"format", "effort"}:
        raise bad("'output_config' takes format and effort")
    out: dict[str, Any] = {}
    fmt = config.get("format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise bad("'output_config.format' must be {\"type\": \"json_schema\", \"schema\": {...}}")
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    if config.get("effort") is not None:
        effort = config["effort"]
        out["reasoning_effort"] = {"xhigh": "high", "max": "high"}.get(effort, effort)
    return out


def chat_fields(body: Any, known: set) -> dict:
    """The server's chat request fields for an Anthropic body."""
    known_fields(body, known)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad("'messages' must be a non-empty list")
    msgs = [out for i, msg in enumerate(raw) for out in _message(msg, i)]
    if body.get("system"):
        msgs.insert(0, {"role": "system", "content": text_parts(body["system"], "'system'")})
    return {"model": body.get("model"), "messages": msgs, **_tools(body), **_thinking(body), **_output_config(body)}


def request(body: Any):
    fields = chat_fields(body, KNOWN)
    if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
        raise bad("'max_tokens' is required: a positive integer")
    fields.update({k: body[k] for k in ("max_tokens", "stream", "temperature", "top_p", "top_k", "metadata")
                   if body.get(k) is not None})
    if body.get("stop_sequences") is not None:
        fields["stop"] = body["stop_sequences"]
    return parse_request(fields, "chat", {"stop": "stop_sequences"})


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
    gr = parse_request(chat_fields(req.json(), COUNT_KNOWN), "chat")
    with app.state.lease(gr.model) as lease:
        rendered = lease.resident.supervisor.call(m.RenderChat(gr.job))
    return Response.json(200, {"input_tokens": rendered["tokens"]})
