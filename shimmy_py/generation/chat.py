"""Chat templates rendered as llama-server renders them (its default `--jinja`
path, common/chat.cpp): the GGUF's Jinja text run by jinja2 in a sandbox with
the variables llama.cpp gives it (messages, bos_token, eos_token,
add_generation_prompt, enable_thinking, datetime, date_string, and the
strftime_now and raise_exception functions; a request's chat_template_kwargs
and reasoning_effort over them), and llama.cpp's workarounds:
a "developer" message becomes "system" (except for gpt-oss, whose template
knows it); where the template ignores a system message, it is merged into the
next message; a leading BOS (trailing EOS) the tokenizer adds anyway is cut.

libllama's own llama_chat_apply_template only recognizes a template by its
text and formats turns with built-in code: a template's own additions (Qwen2's
default system prompt, DeepSeek-V3.1's and GLM's think tags, gpt-oss's system
preamble) are lost there. It still serves template names ("chatml").
"""
from __future__ import annotations

import datetime
import functools
import json
from dataclasses import dataclass
from typing import Sequence

from ..errors import GenerationError


@dataclass(frozen=True)
class SpecialTokens:
    """What a template sees of the vocabulary, and what tokenizing adds."""
    bos: str
    eos: str
    adds_bos: bool
    adds_eos: bool


def is_jinja(template: str) -> bool:
    """Jinja text, as GGUF files carry; otherwise a llama.cpp template name."""
    return "{{" in template or "{%" in template


@functools.lru_cache(maxsize=16)
def _compiled(template: str):
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise GenerationError(f"the chat template refused the messages: {message}")

    def tojson(value, indent=None, ensure_ascii=False, separators=None, sort_keys=False):
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators,
                          sort_keys=sort_keys)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=raise_exception,
                       strftime_now=lambda fmt: datetime.datetime.now().strftime(fmt))
    env.filters["tojson"] = tojson
    try:
        return env.from_string(template)
    except TemplateError as e:
        raise GenerationError(f"the chat template does not parse as Jinja: {e}") from None


def _render(template: str, messages: list[dict], special: SpecialTokens, add_generation_prompt: bool,
            extra: dict | None = None, tools: list | None = None) -> str:
    from jinja2 import TemplateError
    now = datetime.datetime.now()
    variables = dict(messages=messages, bos_token=special.bos, eos_token=special.eos,
                     add_generation_prompt=add_generation_prompt, enable_thinking=True,
                     datetime=now.strftime("%b %d %Y"), date_string=now.strftime("%d %b %Y"))
    if tools:                                    # as llama.cpp: only a non-empty list is passed
        variables["tools"] = tools
    variables.update(extra or {})
    if "reasoning_effort" in variables:          # llama.cpp binds both names to the effort
        variables["reasoning_strength"] = variables["reasoning_effort"]
    try:
        return _compiled(template).render(**variables)
    except GenerationError:
        raise
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as e:   # a template's own fault
        raise GenerationError(f"the chat template failed: {type(e).__name__}: {e}") from None


@functools.lru_cache(maxsize=16)
def supports_system_role(template: str, special: SpecialTokens) -> bool:
    """Whether the template shows a system message (llama.cpp's capability probe)."""
    probe = [{"role": "system", "content": "System message"}, {"role": "user", "content": "User message"}]
    try:
        return "System message" in _render(template, probe, special, True)
    except GenerationError:
        return False


@dataclass(frozen=True)
class ToolCaps:
    """What a template does with tool calls in the history (llama.cpp's caps
    probe, common/jinja/caps.cpp): whether it shows them, and whether it
    reads their arguments as an object (then string arguments are parsed
    before rendering, as llama.cpp does)."""
    tool_calls: bool
    object_arguments: bool


_PROBE_TOOLS = [{"type": "function", "function": {"name": "tool1", "description": "Tool description",
                                                  "parameters": {"type": "object", "properties": {
                                                      "arg": {"type": "string", "description": "Arg description"}},
                                                      "required": ["arg"]}}}]


@functools.lru_cache(maxsize=16)
def tool_caps(template: str, special: SpecialTokens) -> ToolCaps:
    def probe(arguments) -> str | None:
        msgs = [{"role": "user", "content": "User message"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call00001", "type": "function", "function": {"name": "tool1", "arguments": arguments}}]},
                {"role": "tool", "content": "Tool response", "tool_call_id": "call00001"},
                {"role": "assistant", "content": "The tool response was 'tool response'"},
                {"role": "user", "content": "User message"}]
        try:
            return _render(template, msgs, special, True, None, _PROBE_TOOLS)
        except GenerationError:
            return None
    as_object = probe({"arg": "ARG_MARKER"})
    if as_object is not None and "ARG_MARKER" in as_object and "'arg'" not in as_object:
        return ToolCaps("tool1" in as_object, True)
    as_string = probe('{"arg": "ARG_MARKER"}')
    return ToolCaps(as_string is not None and "tool1" in as_string, False)


def _tool_workarounds(msgs: list[dict], template: str, special: SpecialTokens) -> None:
    """llama.cpp's: a null content becomes "" where the template shows tool
    calls; string arguments become objects where it reads them as objects."""
    if not any(m.get("tool_calls") or m.get("content") is None for m in msgs):
        return
    caps = tool_caps(template, special)
    for m in msgs:
        if m.get("content") is None and caps.tool_calls:
            m["content"] = ""
        if caps.object_arguments and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call.get("function", {}))
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"])
                    except ValueError:
                        raise GenerationError(f"tool call arguments are not JSON: {fn['arguments'][:100]!r}") from None
                calls.append({**call, "function": fn})
            m["tool_calls"] = calls


def render(template: str, messages: Sequence[dict], special: SpecialTokens, add_generation_prompt: bool,
           extra: dict | None = None, tools: list | None = None) -> str:
    """The prompt text of `messages` under the Jinja `template`; `extra`: more
    variables (llama-server's chat_template_kwargs), over the defaults; `tools`:
    OpenAI's tool list, as llama-server passes it."""
    msgs = [dict(m) for m in messages]
    if "<|channel|>" not in template:                  # llama.cpp maps developer to system, but for gpt-oss
        for m in msgs:
            if m["role"] == "developer":
                m["role"] = "system"
    if msgs and msgs[0]["role"] == "system" and not supports_system_role(template, special):
        first = msgs.pop(0)
        if msgs:
            msgs[0]["content"] = (first["content"] or "") + "\n" + (msgs[0]["content"] or "")
    _tool_workarounds(msgs, template, special)
    text = _render(template, msgs, special, add_generation_prompt, extra, tools)
    if special.adds_bos and special.bos and text.startswith(special.bos):
        text = text[len(special.bos):]
    if special.adds_eos and special.eos and text.endswith(special.eos):
        text = text[:-len(special.eos)]
    return text
