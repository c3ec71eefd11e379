"""The chat fields of a request, checked up front with a message naming
each: messages (text content parts, an assistant's tool_calls with null
content, tool results with tool_call_id), tools and tool_choice (and the
legacy functions / function_call), parallel_tool_calls, response_format
(json_object, json_schema) and llama-server's grammar / json_schema,
reasoning_format, chat_template_kwargs and reasoning_effort. What cannot be
honoured is an error, never ignored."""
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


def messages(body: dict, system: str | None) -> list | None:
    raw = body.get("messages")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad("'messages' must be a list")
    if len(raw) > MAX_MESSAGES:
        raise bad(f"'messages' holds {len(raw)} messages; at most {MAX_MESSAGES}")
    out = [{"role": "system", "content": system}] if system else []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
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
    if not out:
        raise bad("'messages' is empty")
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


def _legacy_functions(body: dict) -> tuple[list, Any]:
    """OpenAI's deprecated functions / function_call, as tools / tool_choice."""
    funcs = body.get("functions")
    if not isinstance(funcs, list):
        raise bad("'functions' must be a list")
    choice = body.get("function_call", "auto")
    if isinstance(choice, dict):
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    return [{"type": "function", "function": f} for f in funcs], choice


def chat_options(body: dict, template_kwargs: dict | None) -> ChatOptions:
    tools_raw, choice = body.get("tools"), body.get("tool_choice", "auto")
    if body.get("functions") is not None:
        if tools_raw is not None:
            raise bad("give 'tools' or the deprecated 'functions', not both")
        tools_raw, choice = _legacy_functions(body)
    tools = []
    if tools_raw is not None:
        if not isinstance(tools_raw, list) or len(tools_raw) > MAX_TOOLS:
            raise bad(f"'tools' must be a list of at most {MAX_TOOLS} tools")
        tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(tools_raw)]
        if len({t.name for t in tools}) != len(tools):
            raise bad("'tools' names a function twice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if not isinstance(name, str):
            raise bad("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}")
        choice = name
    elif choice not in TOOL_CHOICES:
        raise bad(f"'tool_choice' must be one of {', '.join(TOOL_CHOICES)} or a function, got {choice!r}")
    if choice not in TOOL_CHOICES and choice not in {t.name for t in tools}:
        raise bad(f"'tool_choice' names {choice!r}, which is not among the tools offered")
    if choice == "required" and not tools:
        raise bad("'tool_choice' is \"required\" but no tools are offered")
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise bad("'parallel_tool_calls' must be a boolean")
    fmt = body.get("reasoning_format", "auto")
    if fmt not in REASONING_FORMATS:
        raise bad(f"'reasoning_format' must be one of {', '.join(REASONING_FORMATS)}")
    return ChatOptions(tuple(tools), choice, parallel, fmt, template_kwargs)


def grammar(body: dict) -> str:
    """response_format (OpenAI), or llama-server's grammar / json_schema, as a GBNF grammar ("": none)."""
    given = [k for k in ("response_format", "grammar", "json_schema") if body.get(k) is not None]
    if len(given) > 1:
        raise bad(f"give one of 'response_format', 'grammar' and 'json_schema', not {' and '.join(given)}")
    if not given:
        return ""
    try:
        if given[0] == "grammar":
            return _text(body["grammar"], "'grammar'")
        if given[0] == "json_schema":
            return schema_to_grammar(body["json_schema"])
        fmt = body["response_format"]
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            return ""
        if kind == "json_object":
            schema = fmt.get("schema")            # llama-server's extension
            return schema_to_grammar(schema) if schema is not None else JSON_OBJECT
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or "schema" not in spec:
                raise bad("'response_format.json_schema' must be {\"name\": ..., \"schema\": {...}}")
            return schema_to_grammar(spec["schema"])
        raise bad("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"")
    except GenerationError as e:
        raise bad(f"'{given[0]}': {e}") from None


def template_kwargs(body: dict) -> dict | None:
    """llama-server's chat_template_kwargs (variables for the chat template,
    e.g. Qwen3's enable_thinking) and OpenAI's reasoning_effort ("none": no
    thinking), merged as llama-server merges them."""
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise bad("'chat_template_kwargs' must be an object")
    kwargs = dict(kwargs)
    if len(kwargs) > MAX_TEMPLATE_KWARGS or any(len(k) > 64 for k in kwargs):
        raise bad(f"'chat_template_kwargs' takes at most {MAX_TEMPLATE_KWARGS} names of at most 64 characters")
    if not isinstance(kwargs.get("enable_thinking", False), bool):
        raise bad("'chat_template_kwargs.enable_thinking' must be a boolean")
    effort = body.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise bad("'reasoning_effort' must be a string")
    if effort == "none":
        kwargs["enable_thinking"] = False
        kwargs.pop("reasoning_effort", None)
    elif effort:
        kwargs["reasoning_effort"] = _text(effort, "'reasoning_effort'")
    return kwargs or None
