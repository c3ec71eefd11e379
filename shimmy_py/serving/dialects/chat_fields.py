"""The parsers of a request's chat fields (jobs.Field), each checking its
field up front with a message naming it: messages (text content parts, an assistant's tool_calls with null
content, tool results with tool_call_id), tools and tool_choice (and the
legacy functions / function_call), parallel_tool_calls, response_format
(json_object, json_schema) and llama-server's grammar / json_schema,
reasoning_format, chat_template_kwargs and reasoning_effort; and the chat
options they make together (`chat_options`). What cannot be honoured is an
error, never ignored."""
from __future__ import annotations

import json
from typing import Any

from ...errors import GenerationError
from ...generation.chatting import TOOL_CHOICES, ChatOptions
from ...generation.grammar import JSON_OBJECT, schema_to_grammar
from ...generation.reasoning import REASONING_FORMATS
from ...generation.tool_formats import Tool
from ..http.errors import bad
from .known import known_fields

MAX_MESSAGES = 4096
MAX_TOOLS = 128
MAX_TEMPLATE_KWARGS = 32
ROLES = ("system", "developer", "user", "assistant", "tool")


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise bad(f"{where} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"{where} holds a lone UTF-16 surrogate: not text") from None
    return value


def text_parts(content, where: str, kinds=("text",)) -> str:
    """A string, or a list of text parts (each {"type": one of `kinds`,
    "text": ...}) joined: OpenAI's content parts, Responses' input_text and
    output_text, Anthropic's text blocks."""
    if isinstance(content, str):
        return _text(content, where)
    if not isinstance(content, list):
        raise bad(f"{where} must be a string or a list of content parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad(f"{where}[{j}] must be an object with a string 'type'")
        if part["type"] not in kinds:
            raise bad(f"{where}[{j}] is a {part['type']!r} part: this server's models take text only")
        texts.append(_text(part.get("text"), f"{where}[{j}].text"))
    return "".join(texts)


def _content(content, where: str) -> str | None:
    """A message's content: text, OpenAI's text parts, or null."""
    return None if content is None else text_parts(content, where)


def _tool_calls(calls, where: str) -> list[dict]:
    if not isinstance(calls, list) or len(calls) > MAX_TOOLS:
        raise bad(f"{where} must be a list of at most {MAX_TOOLS} tool calls")
    out = []
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad(f"{where}[{k}] must be {{\"type\": \"function\", \"function\": {{\"name\": ..., "
                      "\"arguments\": ...}}}")
        args = fn.get("arguments", "{}")
        if not isinstance(args, (str, dict)):
            raise bad(f"{where}[{k}].function.arguments must be a JSON string (or an object)")
        out.append({"id": str(call.get("id") or f"call_{k}"), "type": "function",
                    "function": {"name": _text(fn["name"], f"{where}[{k}].function.name"),
                                 "arguments": args if isinstance(args, str) else json.dumps(args)}})
    return out


def messages(raw, name: str) -> list:
    """OpenAI's chat messages (the system text a dialect gives apart is put
    first by jobs.build)."""
    if not isinstance(raw, list):
        raise bad(f"'{name}' must be a list", name)
    if len(raw) > MAX_MESSAGES:
        raise bad(f"'{name}' holds {len(raw)} messages; at most {MAX_MESSAGES}", name)
    out = []
    for i, m in enumerate(raw):
        where = f"{name}[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad(f"{where} must be an object with a string 'role'")
        role = _text(m["role"], f"{where}.role")
        msg: dict[str, Any] = {"role": role, "content": _content(m.get("content"), f"{where}.content")}
        if m.get("tool_calls") is not None:
            if role != "assistant":
                raise bad(f"{where}.tool_calls: only an assistant message calls tools")
            msg["tool_calls"] = _tool_calls(m["tool_calls"], f"{where}.tool_calls")
        if role == "tool":
            if m.get("tool_call_id") is not None:
                msg["tool_call_id"] = _text(m["tool_call_id"], f"{where}.tool_call_id")
        for key in ("name", "reasoning_content"):
            if m.get(key) is not None:
                msg[key] = _text(m[key], f"{where}.{key}")
        if msg["content"] is None and not msg.get("tool_calls"):
            raise bad(f"{where}.content must be a string or a list of content parts (null only beside tool_calls)")
        known_fields(m, {"role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content", "refusal",
                         "annotations", "audio"}, where)
        out.append(msg)
    return out


def _tool(spec, where: str) -> Tool:
    fn = spec.get("function") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or spec.get("type", "function") != "function" or not isinstance(fn, dict):
        raise bad(f"{where} must be {{\"type\": \"function\", \"function\": {{\"name\": ..., \"parameters\": ...}}}}")
    name = _text(fn.get("name"), f"{where}.function.name")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise bad(f"{where}.function.parameters must be a JSON schema object")
    try:
        schema_to_grammar(params)            # what cannot be enforced is named now
    except GenerationError as e:
        raise bad(f"{where}.function.parameters: {e}") from None
    return Tool(name, params, _text(fn.get("description", ""), f"{where}.function.description"))


def tools(raw, name: str) -> tuple[Tool, ...]:
    """OpenAI's function tools."""
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise bad(f"'{name}' must be a list of at most {MAX_TOOLS} tools", name)
    out = tuple(_tool(t, f"{name}[{i}]") for i, t in enumerate(raw))
    if len({t.name for t in out}) != len(out):
        raise bad(f"'{name}' names a function twice", name)
    return out


def functions(raw, name: str) -> tuple[Tool, ...]:
    """OpenAI's deprecated functions, as tools."""
    if not isinstance(raw, list):
        raise bad(f"'{name}' must be a list", name)
    return tools([{"type": "function", "function": f} for f in raw], name)


def tool_choice(choice, name: str) -> str:
    """"auto", "none", "required" or {"type": "function", "function": {"name": ...}}: the mode or the name."""
    if isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad(f"'{name}' must be \"auto\", \"none\", \"required\" or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}", name)
        return _text(fn["name"], f"'{name}.function.name'")
    if choice not in TOOL_CHOICES:
        raise bad(f"'{name}' must be one of {', '.join(TOOL_CHOICES)} or a function, got {choice!r}", name)
    return choice


def function_call(choice, name: str) -> str:
    """The deprecated function_call: "auto", "none" or {"name": ...}."""
    return tool_choice({"type": "function", "function": choice} if isinstance(choice, dict) else choice, name)


def reasoning_format(value, name: str) -> str:
    if value not in REASONING_FORMATS:
        raise bad(f"'{name}' must be one of {', '.join(REASONING_FORMATS)}", name)
    return value


def chat_options(f) -> ChatOptions:
    """The chat options of a request's job fields (jobs.JobFields)."""
    offered = f.get("tools", ())
    choice = f.get("tool_choice", "auto")
    if choice not in TOOL_CHOICES and choice not in {t.name for t in offered}:
        raise bad(f"'{f.name('tool_choice')}' names {choice!r}, which is not among the tools offered")
    if choice == "required" and not offered:
        raise bad(f"'{f.name('tool_choice')}' is \"required\" but no tools are offered")
    return ChatOptions(offered, choice, f.get("parallel_tool_calls", True), f.get("reasoning_format", "auto"),
                       _template_kwargs(f))


def _template_kwargs(f) -> dict | None:
    """The template's variables: chat_template_kwargs, with the thinking
    switch and effort a dialect set apart, as llama-server merges them."""
    kwargs = dict(f.get("template_kwargs") or {})
    if f.get("thinking") is not None:
        kwargs["enable_thinking"] = f.get("thinking")
        if not f.get("thinking"):
            kwargs.pop("reasoning_effort", None)
    if f.get("reasoning_effort"):
        kwargs["reasoning_effort"] = f.get("reasoning_effort")
    return kwargs or None


def _schema(schema, name: str) -> str:
    try:
        return schema_to_grammar(schema)
    except GenerationError as e:
        raise bad(f"'{name}': {e}", name) from None


def json_schema(value, name: str) -> str:
    """llama-server's json_schema, as a GBNF grammar."""
    return _schema(value, name)


def response_format(fmt, name: str) -> str | None:
    """OpenAI's response_format as a GBNF grammar (None: text, no grammar)."""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        schema = fmt.get("schema")            # llama-server's extension
        return _schema(schema, name) if schema is not None else JSON_OBJECT
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise bad(f"'{name}.json_schema' must be {{\"name\": ..., \"schema\": {{...}}}}", name)
        return _schema(spec["schema"], name)
    raise bad(f"'{name}.type' must be \"text\", \"json_object\" or \"json_schema\"", name)


def template_kwargs(value, name: str) -> dict:
    """llama-server's chat_template_kwargs: variables for the chat template
    (e.g. Qwen3's enable_thinking)."""
    if not isinstance(value, dict):
        raise bad(f"'{name}' must be an object", name)
    if len(value) > MAX_TEMPLATE_KWARGS or any(len(k) > 64 for k in value):
        raise bad(f"'{name}' takes at most {MAX_TEMPLATE_KWARGS} names of at most 64 characters", name)
    if not isinstance(value.get("enable_thinking", False), bool):
        raise bad(f"'{name}.enable_thinking' must be a boolean", name)
    return dict(value)


def reasoning_effort(effort, name: str) -> tuple[bool | None, str | None]:
    """OpenAI's reasoning_effort as (thinking, effort): "none" turns thinking off."""
    if not isinstance(effort, str):
        raise bad(f"'{name}' must be a string", name)
    return (False, None) if effort == "none" else (None, _text(effort, f"'{name}'"))
