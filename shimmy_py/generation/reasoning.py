"""A reply's thinking apart from its answer, as llama-server's
`reasoning_format` "deepseek" (its default) separates them: text inside the
template's thinking tags (<think>...</think> for Qwen3, DeepSeek-R1/V3.1 and
GLM-4.5) is `reasoning`, the rest `content`; a prompt that ends inside an
open thinking block (DeepSeek-V3.1's thinking mode) starts in reasoning.
gpt-oss's harmony channels are told apart by tool_formats.py's harmony format.

`ThinkSplitter` works on a stream: it holds back text that may be the
start of a tag, so that thinking never leaks into content when a stream is
cut mid-tag, and gives (kind, text) pieces as soon as they are sure.
`think_first` lets a grammar that holds the answer (a response format, a
forced tool call) begin after the think block, as llama-server's does.
"""
from __future__ import annotations

from .grammar import literal

REASONING_FORMATS = ("none", "auto", "deepseek", "deepseek-legacy")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def opens_thinking(prompt: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> bool:
    """Whether the prompt leaves a thinking block open for the model to fill."""
    tail = prompt.rstrip()
    return tail.endswith(open_tag) or (open_tag in tail and tail.rfind(open_tag) > tail.rfind(close_tag))


class ThinkSplitter:
    """Pieces of generated text as ("reasoning" | "content", text), in order."""

    def __init__(self, thinking: bool = False, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE,
                 legacy: bool = False, strip_lead: bool = False):
        self.kind = "reasoning" if thinking else "content"
        # a thinking template's answer starts at its first non-space, think block or not, as llama-server's
        # parser gives it (the space its grammar allows before the block is no content)
        self.strip_lead = strip_lead
        self.open_tag, self.close_tag = open_tag, close_tag
        self.legacy = legacy               # deepseek-legacy: the tags and thinking stay in content too
        self._held = ""
        self._lead = ""                    # whitespace before anything else: dropped if thinking follows
        self._seen_content = False
        self._after_think = False          # the answer after a think block starts at its first non-space

    def _tag(self) -> str:
        return self.close_tag if self.kind == "reasoning" else self.open_tag

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        buf = self._held + text
        self._held = ""
        while buf:
            tag = self._tag()
            at = buf.find(tag)
            if self.kind == "content" and self._seen_content and tag == self.open_tag:
                at = -1                     # thinking comes first; a tag after the answer began is text
            if at >= 0:
                self._emit(out, buf[:at])
                if self.kind == "content" and not self._seen_content:
                    self._lead = ""         # whitespace before <think> is no answer
                if self.legacy:
                    out.append(("content", tag))
                buf = buf[at + len(tag):]
                self.kind = "content" if self.kind == "reasoning" else "reasoning"
                if self.kind == "content" and not self.legacy:
                    self._after_think, self._lead = True, ""
                continue
            keep = _partial_suffix(buf, tag) if not (self.kind == "content" and self._seen_content) else 0
            self._emit(out, buf[:len(buf) - keep])
            self._held = buf[len(buf) - keep:]
            break
        return out

    def _emit(self, out: list, text: str) -> None:
        if not text:
            return
        if self.kind == "content" and not self._seen_content:
            if self._after_think or self.strip_lead:
                text = text.lstrip()
            if not text:
                return
            if not text.strip():
                self._lead += text          # held: a <think> may follow
                return
            text, self._lead = self._lead + text, ""
            self._seen_content = True
        out.append((self.kind, text))
        if self.legacy and self.kind == "reasoning":
            out.append(("content", text))

    def flush(self) -> list[tuple[str, str]]:
        """The end of the stream: what was held back is text of the current kind."""
        held, self._held = self._held, ""
        out: list[tuple[str, str]] = []
        self._emit(out, held)
        if self._lead and self.kind == "content" and not self.strip_lead:
            out.append(("content", self._lead))
            self._lead = ""
        return out


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def split(text: str, thinking: bool = False) -> tuple[str, str]:
    """(reasoning, content) of a whole reply."""
    s = ThinkSplitter(thinking)
    parts = s.feed(text) + s.flush()
    return ("".join(t for k, t in parts if k == "reasoning").strip(),
            "".join(t for k, t in parts if k == "content"))


THINKING_ROOT = "thinking-root"


def think_first(grammar: str, opened: bool, open_tag: str = "<think>", close_tag: str = "</think>",
                fenced: bool = False) -> str:
    """`grammar` (its rule `root`) after a think block, as llama-server holds
    a thinking model's answer to a response format: start the grammar at
    THINKING_ROOT. `opened`: the prompt already opened the block (the model
    is inside it), else the block is optional. The whitespace around it is
    where llama-server's grammar has it (llama.cpp's SPACE_RULE before the
    block, after it and before the answer). `fenced` (a response format):
    the answer may also come in a ```json fence, and space may follow it, as
    llama-server offers; AnswerFence takes both off the content again."""
    until = until_rules("thinking-until", close_tag)
    space = 'thinking-space ::= | " " | "\\n"{1,2} [ \\t]{0,20}\n'
    if opened:
        head = f'thinking-until {literal(close_tag)}'
    else:
        head = f'( {literal(open_tag)} "\\n"? thinking-until "\\n"? {literal(close_tag)} "\\n"? "\\n"? )?'
    answer = ('( "```json" thinking-space root thinking-space "```" | thinking-space root thinking-space )'
              if fenced else "thinking-space root")
    return f"{THINKING_ROOT} ::= thinking-space {head} thinking-space {answer}\n{space}{until}{grammar}"


class AnswerFence:
    """The answer to a response format as llama-server's parser gives it:
    without the whitespace around it and without the ```json fence its
    grammar offers (think_first), on a stream: text that may still be
    either is held until it is sure."""
    OPEN, CLOSE = "```json", "```"

    def __init__(self):
        self.started = self.fenced = self.began = False
        self._held = ""

    def feed(self, text: str) -> str:
        buf, self._held = self._held + text, ""
        if not self.started:
            buf = buf.lstrip()
            if len(buf) < len(self.OPEN) and self.OPEN.startswith(buf):
                self._held = buf                     # nothing yet, or the fence's beginning
                return ""
            self.started = True
            if buf.startswith(self.OPEN):
                self.fenced, buf = True, buf[len(self.OPEN):]
        if not self.began:
            buf = buf.lstrip()
        cut = len(buf.rstrip(" \t\r\n`" if self.fenced else " \t\r\n"))
        out, self._held = buf[:cut], buf[cut:]      # the space after the answer (and the fence's end), until sure
        self.began = self.began or bool(out)
        return out

    def flush(self) -> str:
        held, self._held = self._held.strip(), ""
        if self.fenced and held.endswith(self.CLOSE):
            held = held[:-len(self.CLOSE)].rstrip()
        return held


def until_rules(name: str, stop: str) -> str:
    """Rules `name` for any text that does not contain `stop` (a matcher of
    its prefixes: state k has matched stop[:k])."""
    def cls(*chars: str, negate: bool = False) -> str:
        body = "".join("\\" + c if c in "]\\^-" else c for c in dict.fromkeys(chars))
        return f"[{'^' if negate else ''}{body}]"
    state = [name] + [f"{name}-{k}" for k in range(1, len(stop))]
    first = stop[0]
    rules = [f"{name} ::= | {cls(first)} {state[1] if len(stop) > 1 else name} | {cls(first, negate=True)} {name}"]
    for k in range(1, len(stop)):
        alts = ["", f"{cls(first)} {state[1]}"]
        if k + 1 < len(stop) and stop[k] != first:
            alts.append(f"{cls(stop[k])} {state[k + 1]}")
        alts.append(f"{cls(first, stop[k], negate=True)} {name}")
        rules.append(f"{state[k]} ::= " + " | ".join(alts))
    return "\n".join(rules) + "\n"
