"""OpenAI's Responses API, stateless (nothing is stored, so no
previous_response_id): POST /v1/responses with `input` (text, or items:
messages, function_call, function_call_output, reasoning), `instructions`,
function `tools` and `tool_choice`, `text.format` (json_object,
json_schema), `reasoning.effort`, `max_output_tokens`; the answer as output
items (reasoning, message, function_call), whole or as the typed stream
events the openai client parses (response.created ... response.completed).

The request is read by its table (jobs.py), so the prompt is the one
/v1/chat/completions builds for the same conversation.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..http.app import App
from ..http.errors import bad
from ..http.exchange import Request, Response
from . import chat_fields as c
from . import values as v
from .chat_fields import text_parts
from .jobs import Field, GenRequest, Shape, build, read
from .streaming import answer

TEXT_PARTS = ("input_text", "output_text", "text")


def _messages(raw, name: str) -> list[dict]:
    """`input`: text, or items, as the server's chat messages."""
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise bad(f"'{name}' must be a string or a non-empty list of items", name)
    out: list[dict] = []
    reasoning = ""
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise bad(f"{where} must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            msg = {"role": item.get("role"),
                   "content": text_parts(item.get("content"), f"{where}.content", TEXT_PARTS)}
            if msg["role"] == "assistant" and reasoning:
                msg["reasoning_content"], reasoning = reasoning, ""
            out.append(msg)
        elif kind == "function_call":
            call = {"id": str(item.get("call_id", "")), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "{}")}}
            if out and out[-1].get("role") == "assistant" and "tool_calls" in out[-1]:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call],
                            **({"reasoning_content": reasoning} if reasoning else {})})
                reasoning = ""
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                        "content": text_parts(item.get("output"), f"{where}.output", TEXT_PARTS)})
        elif kind == "reasoning":
            parts = [p for key in ("content", "summary") for p in (item.get(key) or [])]
            reasoning += "".join(p.get("text", "") for p in parts if isinstance(p, dict))
        else:
            raise bad(f"{where} is a {kind!r} item: not supported here")
    return c.messages(out, name)


def _tools(tools, name: str) -> tuple:
    if not isinstance(tools, list):
        raise bad(f"'{name}' must be a list", name)
    specs = []
    for k, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("name"), str):
            kind = t.get("type") if isinstance(t, dict) else None
            raise bad(f"{name}[{k}] is a {kind!r} tool: only function tools are supported here")
        specs.append({"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                       "parameters": t.get("parameters") or {"type": "object"}}})
    return c.tools(specs, name)


def _tool_choice(choice, name: str) -> str:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise bad(f"'{name}' must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", ...}}",
                      name)
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    return c.tool_choice(choice, name)


def _format(text, name: str) -> str | None:
    """text.format: text, json_object or json_schema, as a grammar."""
    if not isinstance(text, dict) or set(text) - {"format", "verbosity"}:
        raise bad(f"'{name}' must be an object with a format", name)
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return c.response_format({"type": "json_object"}, f"{name}.format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return c.json_schema(fmt.get("schema"), f"{name}.format.schema")
    raise bad(f"'{name}.format.type' must be \"text\", \"json_object\" or \"json_schema\"", name)


def _reasoning(reasoning, name: str) -> tuple:
    """reasoning.effort, as (thinking, effort)."""
    if not isinstance(reasoning, dict) or set(reasoning) - {"effort", "summary", "generate_summary"}:
        raise bad(f"'{name}' must be {{\"effort\": ...}}", name)
    effort = reasoning.get("effort")
    return c.reasoning_effort(effort, f"{name}.effort") if effort is not None else (None, None)


TABLE = {
    "model": Field("model", v.text), "input": Field("messages", _messages), "instructions": Field("system", v.text),
    "tools": Field("tools", _tools), "tool_choice": Field("tool_choice", _tool_choice),
    "parallel_tool_calls": Field("parallel_tool_calls", v.boolean),
    "max_output_tokens": Field("max_tokens", v.positive),
    "temperature": Field("temperature", v.SAMPLED["temperature"]), "top_p": Field("top_p", v.SAMPLED["top_p"]),
    "stream": Field("stream", v.boolean), "stream_options": Field("include_usage", v.stream_options),
    "text": Field("grammar", _format), "reasoning": Field(("thinking", "reasoning_effort"), _reasoning),
    **{key: Field(None) for key in ("store", "metadata", "user", "service_tier", "prompt_cache_key",
                                    "safety_identifier")},
    "previous_response_id": Field(None, v.refuse("is not supported: this server stores no responses; send the "
                                                 "whole conversation as input", allowed=("",))),
    "truncation": Field(None, v.refuse("must be \"disabled\": a conversation longer than the context is an error "
                                       "here", allowed=("disabled",))),
    "include": Field(None, v.refuse("is not supported: the output items are all there is", allowed=([],))),
}


def request(body: Any) -> tuple[GenRequest, dict]:
    """The request, and the body (whose fields a response echoes)."""
    return build(read(body, TABLE), Shape("chat", "messages")), body


class ResponsesShapes:
    """One response, whole or as its typed stream events."""
    framing = "sse"

    def __init__(self, model: str, body: dict):
        self.model, self.body = model, body
        self.id = "resp_" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.seq = 0
        self.items: list[dict] = []      # the output so far
        self.open: dict | None = None    # the item whose deltas are streaming

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:24]}"

    def response(self, status: str, c=None) -> dict:
        b = self.body
        fmt = (b.get("text") or {}).get("format") or {"type": "text"}
        out = {"id": self.id, "object": "response", "created_at": self.created, "status": status, "error": None,
               "incomplete_details": None, "instructions": b.get("instructions"),
               "max_output_tokens": b.get("max_output_tokens"), "model": self.model, "output": list(self.items),
               "parallel_tool_calls": b.get("parallel_tool_calls", True), "previous_response_id": None,
               "reasoning": {"effort": (b.get("reasoning") or {}).get("effort"), "summary": None},
               "store": False, "temperature": b.get("temperature"), "text": {"format": fmt},
               "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools", []), "top_p": b.get("top_p"),
               "truncation": "disabled", "metadata": b.get("metadata") or {}, "usage": None}
        if c is not None:
            out["usage"] = {"input_tokens": c.prompt_tokens, "output_tokens": c.completion_tokens,
                            "total_tokens": c.prompt_tokens + c.completion_tokens,
                            "input_tokens_details": {"cached_tokens": c.cached_tokens, "cache_write_tokens": 0},
                            "output_tokens_details": {"reasoning_tokens": 0}}
            if c.finish_reason == "length":
                out["incomplete_details"] = {"reason": "max_output_tokens"}
        return out

    @staticmethod
    def _call_item(call, item_id: str, status: str) -> dict:
        return {"type": "function_call", "id": item_id, "call_id": call.id, "name": call.name,
                "arguments": call.arguments, "status": status}

    def final(self, c) -> dict:
        if c.reasoning:
            self.items.append({"type": "reasoning", "id": self._item_id("rs"), "summary": [], "status": "completed",
                               "content": [{"type": "reasoning_text", "text": c.reasoning}]})
        if c.text or not c.tool_calls:
            self.items.append({"type": "message", "id": self._item_id("msg"), "role": "assistant",
                               "status": "completed",
                               "content": [{"type": "output_text", "text": c.text, "annotations": [], "logprobs": []}]})
        self.items += [self._call_item(call, self._item_id("fc"), "completed") for call in c.tool_calls]
        return self.response("incomplete" if c.finish_reason == "length" else "completed", c)

    # --- the stream ------------------------------------------------------------------------
    def _event(self, kind: str, **data) -> tuple:
        self.seq += 1
        return (kind, json.dumps({"type": kind, "sequence_number": self.seq - 1, **data}, ensure_ascii=False))

    def opening(self) -> list:
        return [self._event("response.created", response=self.response("in_progress")),
                self._event("response.in_progress", response=self.response("in_progress"))]

    def _start(self, kind: str) -> list:
        out = self._finish()
        if kind == "reasoning":
            item = {"type": "reasoning", "id": self._item_id("rs"), "summary": [], "content": [],
                    "status": "in_progress"}
            part = {"type": "reasoning_text", "text": ""}
        else:
            item = {"type": "message", "id": self._item_id("msg"), "role": "assistant", "content": [],
                    "status": "in_progress"}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self.open = {"item": item, "part": part, "index": len(self.items)}
        self.items.append(item)
        return out + [self._event("response.output_item.added", output_index=self.open["index"], item=item),
                      self._event("response.content_part.added", item_id=item["id"],
                                  output_index=self.open["index"], content_index=0, part=part)]

    def _finish(self) -> list:
        if self.open is None:
            return []
        item, part, index = self.open["item"], self.open["part"], self.open["index"]
        self.open = None
        done = "response.reasoning_text.done" if item["type"] == "reasoning" else "response.output_text.done"
        extra = {} if item["type"] == "reasoning" else {"logprobs": []}
        item.update(content=[part], status="completed")
        return [self._event(done, item_id=item["id"], output_index=index, content_index=0, text=part["text"],
                            **extra),
                self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                            part=part),
                self._event("response.output_item.done", output_index=index, item=item)]

    def piece(self, kind: str, value) -> list:
        if kind in ("reasoning", "content"):
            want = "reasoning" if kind == "reasoning" else "message"
            out = self._start(kind) if self.open is None or self.open["item"]["type"] != want else []
            self.open["part"]["text"] += value
            item = self.open["item"]
            delta = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
            extra = {} if kind == "reasoning" else {"logprobs": []}
            return out + [self._event(delta, item_id=item["id"], output_index=self.open["index"], content_index=0,
                                      delta=value, **extra)]
        if kind == "tool_call":
            out = self._finish()
            item_id, index = self._item_id("fc"), len(self.items)
            added = {**self._call_item(value, item_id, "in_progress"), "arguments": ""}
            done = self._call_item(value, item_id, "completed")
            self.items.append(done)
            return out + [self._event("response.output_item.added", output_index=index, item=added),
                          self._event("response.function_call_arguments.delta", item_id=item_id,
                                      output_index=index, delta=value.arguments),
                          self._event("response.function_call_arguments.done", item_id=item_id, output_index=index,
                                      name=value.name, arguments=value.arguments),
                          self._event("response.output_item.done", output_index=index, item=done)]
        return []

    def closing(self, c) -> list:
        out = self._finish()
        status = "incomplete" if c.finish_reason == "length" else "completed"
        return out + [self._event(f"response.{status}", response=self.response(status, c))]

    def error(self, status: int, message: str, kind: str) -> list:
        return [self._event("error", code=str(status), message=message, param=None)]


def create(app: App, req: Request) -> Response:
    gr, body = request(req.json())
    return answer(app, req, gr, lambda name, gr, clock: ResponsesShapes(name, body))
