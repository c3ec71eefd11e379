"""Tool calls as each model family was trained to write them, recognised
from the chat template's text as llama.cpp recognises it (common/chat.cpp):

  hermes      Qwen2.5/Qwen3 (and Hermes):  <tool_call>\\n{"name": N, "arguments": A}\\n</tool_call>
  glm         GLM-4.5/4.6:  <tool_call>N\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value>\\n</tool_call>
  deepseek    DeepSeek-V3.1/R1:  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>N<｜tool▁sep｜>A<｜tool▁call▁end｜>...
  harmony     gpt-oss:  <|channel|>commentary to=functions.N <|constrain|>json<|message|>A<|call|>
  mistral     Mistral:  [TOOL_CALLS][{"name": N, "arguments": A, "id": I}, ...]
  generic     a template that cannot describe tools: they are described in a
              system message and the reply is {"tool_calls": [...]} or
              {"response": "..."} (a JSON grammar holds it to that)

Each format parses a whole reply into (content, calls) (a malformed call
stays text) and writes the GBNF grammar of its tool-call section for the
offered tools, so that a call's arguments are valid JSON for the tool's
schema. `open` is the text that starts a section: the trigger of the lazy
grammar when the model may choose (tool_choice "auto").
"""
from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass

from .grammar import Grammar, literal

_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: dict                  # a JSON schema of its arguments
    description: str = ""

    def spec(self) -> dict:
        """As OpenAI's `tools` list carries it (and chat templates read it)."""
        fn = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": fn}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str                    # JSON text of an object
    id: str = ""

    def message(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def as_tool(spec) -> Tool:
    """A Tool, or OpenAI's {"type": "function", "function": {...}} as one."""
    if isinstance(spec, Tool):
        return spec
    fn = spec.get("function", spec) if isinstance(spec, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        from ..errors import GenerationError
        raise GenerationError(f"a tool is a Tool or {{'type': 'function', 'function': {{'name': ...}}}}, got {spec!r}")
    return Tool(fn["name"], fn.get("parameters") or {"type": "object", "properties": {}}, fn.get("description", ""))


def call_id(alphabet: str = string.ascii_letters + string.digits, n: int = 24, prefix: str = "call_") -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def _json_at(text: str, pos: int):
    """(value, end) of the JSON value at `pos` (after whitespace), or (None, pos)."""
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    try:
        return _DECODER.raw_decode(text, pos)
    except ValueError:
        return None, pos


def _args_text(args) -> str | None:
    return json.dumps(args, ensure_ascii=False) if isinstance(args, dict) else None


class Format:
    name = "none"
    open = ""
    preserve: tuple[str, ...] = ()    # special tokens whose text the parser must see

    def __init__(self, tools: list[Tool] | None = None):
        self.tools = {t.name: t for t in tools or []}

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        at = text.find(self.open) if self.open else -1
        if at < 0:
            return text, []
        calls = self.parse_section(text[at:])
        if not calls:
            return text, []           # malformed: it stays text
        return text[:at].rstrip(), [ToolCall(c.name, c.arguments, call_id()) for c in calls]

    def parse_section(self, section: str) -> list[ToolCall]:
        return []

    # --- grammar -----------------------------------------------------------------
    def args_rule(self, c: Grammar, tool: Tool) -> str:
        return c.add_schema(f"{tool.name}-args", tool.parameters or {"type": "object"})

    def rules(self, parallel: bool) -> Grammar:
        """The tool-call section's rules, its root starting with `open`; each
        tool's arguments as llama.cpp's json_schema_to_grammar writes them."""
        c = Grammar()
        calls = [self.call_rule(c, tool) for tool in self.tools.values()]
        c.rules["call"] = " | ".join(calls)
        c.rules["root"] = self.section_rule(parallel)
        return c

    def grammar(self, parallel: bool) -> str:
        return self.rules(parallel).text()

    def call_rule(self, c: Grammar, tool: Tool) -> str:
        raise NotImplementedError

    def section_rule(self, parallel: bool) -> str:
        return 'call ( "\\n" call )*' if parallel else "call"


class Hermes(Format):
    name, open = "hermes", "<tool_call>"

    def parse_section(self, section: str) -> list[ToolCall]:
        calls, pos = [], 0
        while (at := section.find("<tool_call>", pos)) >= 0:
            obj, end = _json_at(section, at + len("<tool_call>"))
            close = section.find("</tool_call>", end)
            if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or close < 0 \
                    or section[end:close].strip() or (args := _args_text(obj.get("arguments", {}))) is None:
                return []
            calls.append(ToolCall(obj["name"], args))
            pos = close + len("</tool_call>")
        return calls

    def call_rule(self, c, tool):
        head = literal('<tool_call>\n{"name": ' + json.dumps(tool.name, ensure_ascii=False) + ', "arguments": ')
        tail = literal("}\n</tool_call>")
        return c.add_rule(f"{tool.name}-call", f"{head} {self.args_rule(c, tool)} {tail}")


class Glm(Format):
    name, open = "glm", "<tool_call>"

    def parse_section(self, section: str) -> list[ToolCall]:
        calls = []
        for m in re.finditer(r"<tool_call>([^\n<]+)\n?(.*?)</tool_call>", section, re.S):
            name, body = m.group(1).strip(), m.group(2)
            schema = self.tools[name].parameters.get("properties", {}) if name in self.tools else {}
            args = {}
            for k, v in re.findall(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", body, re.S):
                if schema.get(k, {}).get("type") == "string":
                    args[k] = v
                else:
                    try:
                        args[k] = json.loads(v)
                    except ValueError:
                        args[k] = v
            calls.append(ToolCall(name, json.dumps(args, ensure_ascii=False)))
        return calls

    def call_rule(self, c, tool):
        props = (tool.parameters or {}).get("properties", {})
        required = (tool.parameters or {}).get("required", list(props))
        parts = [literal(f"<tool_call>{tool.name}\n")]
        for key in [k for k in props if k in required]:
            sub = props[key]
            value = '[^<]*' if sub.get("type") == "string" else \
                c.add_schema(f"{tool.name}-{key}", sub, root=tool.parameters)
            parts.append(f'{literal(f"<arg_key>{key}</arg_key>" + chr(10) + "<arg_value>")} {value} '
                         f'{literal("</arg_value>" + chr(10))}')
        parts.append(literal("</tool_call>"))
        return c.add_rule(f"{tool.name}-call", " ".join(parts))


DS_CALLS, DS_CALL, DS_SEP, DS_END, DS_CALLS_END = ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                                                  "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>")


class DeepSeek(Format):
    name, open = "deepseek", DS_CALLS

    def parse_section(self, section: str) -> list[ToolCall]:
        calls, pos = [], len(DS_CALLS)
        while (at := section.find(DS_CALL, pos)) >= 0:
            sep = section.find(DS_SEP, at)
            if sep < 0:
                return []
            name = section[at + len(DS_CALL):sep].strip()
            obj, end = _json_at(section, sep + len(DS_SEP))
            if (args := _args_text(obj)) is None or not section[end:].lstrip().startswith(DS_END):
                return []
            calls.append(ToolCall(name, args))
            pos = section.find(DS_END, end) + len(DS_END)
        return calls

    def call_rule(self, c, tool):
        return c.add_rule(f"{tool.name}-call", f'{literal(DS_CALL + tool.name + DS_SEP)} {self.args_rule(c, tool)} '
                                          f'{literal(DS_END)}')

    def section_rule(self, parallel: bool) -> str:
        calls = "call+" if parallel else "call"
        return f"{literal(DS_CALLS)} {calls} {literal(DS_CALLS_END)}"


class Harmony(Format):
    """gpt-oss: analysis is reasoning, final is content, commentary to=functions.N a call."""
    name, open = "harmony", "<|channel|>commentary to=functions."
    preserve = ("<|channel|>", "<|message|>", "<|constrain|>", "<|start|>", "<|end|>", "<|call|>", "<|return|>")
    MESSAGE = re.compile(r"<\|channel\|>(\w+)(?: to=functions\.([^\s<]+))?\s*(?:<\|constrain\|>\w+)?<\|message\|>"
                         r"(.*?)(?=<\|end\|>|<\|call\|>|<\|return\|>|<\|start\|>|$)", re.S)

    def messages(self, text: str) -> list[tuple[str, str | None, str]]:
        """(channel, recipient function or None, body) of each message."""
        return [(m.group(1), m.group(2), m.group(3)) for m in self.MESSAGE.finditer(text)]

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        calls, content = [], []
        for channel, fn, body in self.messages(text):
            if channel == "commentary" and fn:
                obj, end = _json_at(body, 0)
                if (args := _args_text(obj)) is None or body[end:].strip():
                    return self.final(text), []
                calls.append(ToolCall(fn, args, call_id()))
            elif channel == "final":
                content.append(body)
        if not self.messages(text):
            return text, []
        return "".join(content), calls

    def final(self, text: str) -> str:
        return "".join(body for channel, fn, body in self.messages(text) if channel == "final") or text

    def reasoning(self, text: str) -> str:
        return "".join(body for channel, _, body in self.messages(text) if channel == "analysis")

    def call_rule(self, c, tool):
        return c.add_rule(f"{tool.name}-call", f'{literal(self.open + tool.name + " <|constrain|>json<|message|>")} '
                                          f'{self.args_rule(c, tool)} {literal("<|call|>")}')

    def section_rule(self, parallel: bool) -> str:
        return "call"                 # one call per message: <|call|> ends the turn


class Mistral(Format):
    name, open = "mistral", "[TOOL_CALLS]"

    def parse_section(self, section: str) -> list[ToolCall]:
        arr, _ = _json_at(section, len(self.open))
        if not isinstance(arr, list) or not arr:
            return []
        calls = []
        for item in arr:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                    (args := _args_text(item.get("arguments", {}))) is None:
                return []
            calls.append(ToolCall(item["name"], args))
        return calls

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        content, calls = super().parse(text)   # Mistral's ids are 9 letters and digits
        return content, [ToolCall(c.name, c.arguments, call_id(n=9, prefix="")) for c in calls]

    def call_rule(self, c, tool):
        head = literal('{"name": ' + json.dumps(tool.name, ensure_ascii=False) + ', "arguments": ')
        return c.add_rule(f"{tool.name}-call", f'{head} {self.args_rule(c, tool)} "}}"')

    def section_rule(self, parallel: bool) -> str:
        more = ' ( ", " call )*' if parallel else ""
        return f'{literal("[TOOL_CALLS][")} call{more} "]"'


class Generic(Format):
    """For templates that cannot describe tools: a system message does, and
    the reply is one JSON object."""
    name, open = "generic", '{"tool_calls"'

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        obj, end = _json_at(text, 0)
        if not isinstance(obj, dict) or text[end:].strip():
            return text, []
        if isinstance(obj.get("response"), str) and len(obj) == 1:
            return obj["response"], []
        calls = []
        for item in obj.get("tool_calls", []) if isinstance(obj.get("tool_calls"), list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                    (args := _args_text(item.get("arguments", {}))) is None:
                return text, []
            calls.append(ToolCall(item["name"], args, call_id()))
        return ("", calls) if calls else (text, [])

    def call_rule(self, c, tool):
        head = literal('{"name": ' + json.dumps(tool.name, ensure_ascii=False) + ', "arguments": ')
        return c.add_rule(f"{tool.name}-call", f'{head} {self.args_rule(c, tool)} "}}"')

    def section_rule(self, parallel: bool) -> str:
        more = ' ( ", " call )*' if parallel else ""
        return f'{literal("{" + chr(34) + "tool_calls" + chr(34) + ": [")} call{more} "]}}"'

    def answer_grammar(self, parallel: bool) -> str:
        """Either a call section or {"response": "..."}: the whole reply (tool_choice auto)."""
        c = self.rules(parallel)
        c.rules["calls"] = c.rules.pop("root")
        c.rules["root"] = 'calls | "{\\"response\\": " text "}"'
        c.rules["text"] = f'"\\"" {c.primitive("char")}* "\\""'
        return c.text()

    def system_message(self) -> str:
        tools = json.dumps([t.spec() for t in self.tools.values()], ensure_ascii=False, indent=2)
        return ("You can call these tools:\n" + tools + "\n\nAnswer with one JSON object: either "
                '{"tool_calls": [{"name": TOOL NAME, "arguments": {ARGUMENTS}}]} to call tools, or '
                '{"response": YOUR ANSWER} to answer.')


FORMATS = (Harmony, Mistral, DeepSeek, Glm, Hermes)


def detect(template: str) -> type[Format]:
    """The tool-call format of a chat template, as llama.cpp tells them apart
    by marker text; Generic when it has none it knows."""
    if "<|channel|>" in template:
        return Harmony
    if "[TOOL_CALLS]" in template:
        return Mistral
    if DS_CALLS in template:
        return DeepSeek
    if "<tool_call>" in template and "<arg_key>" in template:
        return Glm
    if "<tool_call>" in template:
        return Hermes
    return Generic
