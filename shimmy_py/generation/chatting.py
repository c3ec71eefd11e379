"""A chat turn from messages to a structured reply, shared by Model.chat and
the server's worker: `prepare` renders the prompt (the tools through the
template, as llama-server passes them; for a template that cannot describe
tools, the generic format's system message), picks the model's tool-call
format (tool_formats.py) and the grammar that holds the reply to it
(`tool_choice` "auto": lazy, switched on by the format's opening text;
"required" or a named function: from the first token, after the think
block a thinking template lets the model write first, as for a response
format), and returns a
`ChatParser` that turns the generated text, piece by piece, into deltas of
reasoning, content and tool calls (reasoning.py), and the final message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import GenerationError
from .loop import relay
from .reasoning import (
    REASONING_FORMATS,
    THINK_CLOSE,
    THINK_OPEN,
    THINKING_ROOT,
    AnswerFence,
    ThinkSplitter,
    opens_thinking,
    think_first,
)
from .sampling import SamplingParams
from .tool_formats import Format, Generic, Harmony, Tool, ToolCall, detect

TOOL_CHOICES = ("auto", "none", "required")


@dataclass(frozen=True)
class ChatOptions:
    """What a chat turn asks beyond its messages and sampling."""
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"          # "auto", "none", "required", or the name of the function to call
    parallel_tool_calls: bool = True
    reasoning_format: str = "auto"     # "none": thinking stays in the content; else it is reasoning_content
    template_kwargs: dict | None = None

    def __post_init__(self):
        if self.reasoning_format not in REASONING_FORMATS:
            raise GenerationError(f"reasoning_format must be one of {', '.join(REASONING_FORMATS)}, "
                                  f"got {self.reasoning_format!r}")
        if self.tool_choice not in TOOL_CHOICES and self.tool_choice not in {t.name for t in self.tools}:
            raise GenerationError(f"tool_choice {self.tool_choice!r} names no tool offered "
                                  f"({', '.join(t.name for t in self.tools) or 'none'})")


@dataclass
class Reply:
    """The structured end of a chat turn."""
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


class ChatParser:
    """Generated text in, (kind, value) deltas out: ("reasoning", text),
    ("content", text), ("tool_call", ToolCall). Text that may open a tool
    call is held back until it is sure."""

    def __init__(self, fmt: Format | None, thinking: bool, reasoning_format: str, fenced: bool = False,
                 strip_lead: bool = False):
        self.fmt = fmt
        self.fence = AnswerFence() if fenced else None   # a response format's answer, as llama-server parses it
        self.split = reasoning_format != "none" and not isinstance(fmt, Harmony)
        self.think = ThinkSplitter(thinking, legacy=reasoning_format == "deepseek-legacy",
                                   strip_lead=strip_lead) if self.split else None
        self.reply = Reply()
        self._section = None               # the tool-call section, once it began
        self._held = ""
        self._raw = ""                     # harmony: the whole text, channels parsed at the end

    def feed(self, text: str) -> list[tuple[str, Any]]:
        if isinstance(self.fmt, Harmony):
            self._raw += text
            return []
        parts = self.think.feed(text) if self.think else [("content", text)]
        return self._route(parts)

    def _route(self, parts) -> list[tuple[str, Any]]:
        out = []
        for kind, text in parts:
            if kind == "reasoning":
                self.reply.reasoning += text
                out.append((kind, text))
            else:
                out += self._content(text)
        return out

    def _content(self, text: str) -> list[tuple[str, Any]]:
        if self._section is not None:
            self._section += text
            return []
        if self.fmt is None or not self.fmt.open:
            text = self.fence.feed(text) if self.fence else text
            self.reply.content += text
            return [("content", text)] if text else []
        buf = self._held + text
        self._held = ""
        at = buf.find(self.fmt.open) if not isinstance(self.fmt, Generic) else (0 if buf.lstrip() else -1)
        if at >= 0:
            self._section = buf[at:]
            buf = buf[:at].rstrip()            # the space before a call is no answer
        else:
            keep = _prefix_tail(buf, self.fmt.open)
            keep += len(buf) - keep - len(buf[:len(buf) - keep].rstrip())   # and trailing space, until sure
            buf, self._held = buf[:len(buf) - keep], buf[len(buf) - keep:]
        self.reply.content += buf
        return [("content", buf)] if buf else []

    def finish(self) -> tuple[list[tuple[str, Any]], Reply]:
        """The last deltas (held text, the tool calls) and the whole reply."""
        if isinstance(self.fmt, Harmony):
            return self._finish_harmony()
        out = self._route(self.think.flush()) if self.think else []
        held, self._held = self._held, ""
        if self.fence is not None:
            held += self.fence.flush()
        if held:
            self.reply.content += held
            out.append(("content", held))
        if self._section is not None:
            content, calls = self.fmt.parse(self._section)
            if calls:
                self.reply.tool_calls = calls
                out += [("tool_call", c) for c in calls]
                if content:
                    self.reply.content += content
                    out.append(("content", content))
            else:                               # malformed: it stays text
                self.reply.content += self._section
                out.append(("content", self._section))
        return out, self.reply

    def _finish_harmony(self) -> tuple[list[tuple[str, Any]], Reply]:
        fmt, text = self.fmt, self._raw
        content, calls = fmt.parse(text)
        reasoning = fmt.reasoning(text)
        if not fmt.messages(text):              # no channels: all of it is the answer
            content, reasoning = text, ""
        self.reply = Reply(content, reasoning, calls if fmt.tools else [])
        out = ([("reasoning", reasoning)] if reasoning else []) + ([("content", content)] if content else [])
        return out + [("tool_call", c) for c in self.reply.tool_calls], self.reply


def structured(pieces, parser: ChatParser):
    """run()'s text pieces as the parser's (kind, value) deltas; returns the
    Completion with the reply's content as its text, its reasoning and tool
    calls (finish_reason "tool_calls"). Closing it closes `pieces`."""
    completion = yield from relay(pieces, parser.feed)
    out, reply = parser.finish()
    yield from out
    completion.text, completion.reasoning, completion.tool_calls = reply.content, reply.reasoning, reply.tool_calls
    if reply.tool_calls:
        completion.finish_reason = "tool_calls"
    return completion


def _prefix_tail(text: str, marker: str) -> int:
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


@dataclass
class ChatTurn:
    prompt: str
    sampling: SamplingParams
    parser: ChatParser
    special: tuple[str, ...]           # texts of special tokens the parser must see in the output


def prepare(vocab, messages: list[dict], options: ChatOptions, sampling: SamplingParams) -> ChatTurn:
    """The prompt, the sampling (with the tool grammar) and the parser of one turn."""
    template = vocab.template_text()
    tools = list(options.tools)
    use_tools = bool(tools) and options.tool_choice != "none"
    fmt_cls = detect(template) if tools else None
    if use_tools and sampling.grammar:
        raise GenerationError("a grammar (or response_format) and tools cannot be combined: the tool calls have "
                              "their own grammar")
    if detect(template) is Generic:
        messages = generic_history(messages)
    if fmt_cls is Generic and use_tools:
        messages = _with_system(messages, Generic(tools).system_message())
    rendered_tools = [t.spec() for t in tools] if tools and fmt_cls is not Generic else None
    prompt = vocab.apply_chat_template(messages, True, options.template_kwargs, tools=rendered_tools)
    chosen = [t for t in tools if t.name == options.tool_choice] or tools
    fmt = fmt_cls(chosen) if use_tools else (Harmony() if fmt_cls is Harmony or "<|channel|>" in template else None)
    if use_tools:
        sampling = replace(sampling, **_tool_grammar(fmt, options))
    fenced = False
    if sampling.grammar and not sampling.grammar_triggers and THINK_OPEN in template \
            and not prompt.rstrip().endswith(THINK_CLOSE):
        fenced = not use_tools                      # a response format: llama-server offers it fenced too
        sampling = replace(sampling, grammar=think_first(sampling.grammar, opens_thinking(prompt), fenced=fenced),
                           grammar_root=THINKING_ROOT)
    parser = ChatParser(fmt, opens_thinking(prompt), options.reasoning_format, fenced,
                        strip_lead=THINK_OPEN in template)
    special = fmt.preserve if fmt is not None else ()
    return ChatTurn(prompt, sampling, parser, special)


def _tool_grammar(fmt: Format, options: ChatOptions) -> dict:
    parallel = options.parallel_tool_calls
    forced = options.tool_choice not in ("auto",)
    if isinstance(fmt, Generic):
        return {"grammar": fmt.grammar(parallel) if forced else fmt.answer_grammar(parallel), "grammar_triggers": ()}
    return {"grammar": fmt.grammar(parallel), "grammar_triggers": () if forced else (fmt.open,)}


def generic_history(messages: list[dict]) -> list[dict]:
    """A history with tool calls for a template that cannot show them: each
    call becomes the JSON the generic format asks the model for, each result
    a user turn {"tool_response": ...} (minja's polyfills, which llama.cpp
    used), consecutive user turns merged so strict templates still alternate."""
    out: list[dict] = []
    merge_next = False
    for m in messages:
        result = m.get("role") == "tool"
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls = [{"name": c.get("function", {}).get("name"), "arguments": _arguments(c), "id": c.get("id")}
                     for c in m["tool_calls"]]
            body = {"tool_calls": calls, **({"content": m["content"]} if m.get("content") else {})}
            m = {"role": "assistant", "content": json.dumps(body, ensure_ascii=False, indent=2)}
        elif result:
            fields = (("tool", m.get("name")), ("tool_call_id", m.get("tool_call_id")), ("content", m.get("content")))
            m = {"role": "user", "content": json.dumps({"tool_response": {k: v for k, v in fields if v is not None}},
                                                       ensure_ascii=False, indent=2)}
        if out and m["role"] == "user" and out[-1]["role"] == "user" and (result or merge_next):
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{m['content']}"}
        else:
            out.append(m if m.get("content") is not None else {**m, "content": ""})
        merge_next = result
    return out


def _arguments(call: dict):
    args = call.get("function", {}).get("arguments")
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            raise GenerationError(f"tool call arguments are not JSON: {args[:100]!r}") from None
    return args


def _with_system(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=(messages[0].get("content") or "") + "\n\n" + text)
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
