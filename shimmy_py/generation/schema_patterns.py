"""A string schema's `pattern` as a GBNF rule, as llama.cpp's
`_pattern_to_rule` (common/json-schema-to-grammar.cpp) writes it: the same
merging of literals, the same sub-rules for repeated classes and groups.

Where llama.cpp's rule would not hold the pattern, this one differs, each on
purpose:
- the grammar matches the string as JSON writes it, so a quote, a backslash
  or a control character in the pattern is matched in its escaped form, and
  `.` and negated classes never match a raw quote, backslash or control
  character (llama.cpp's `.` is `[^\\x0A\\x0D]`: a bare `"` could end the string
  early, or the document would not be JSON);
- `\\d \\w \\s` and their negations are classes, and a pattern not anchored at
  a side is free there (`char*`), where llama.cpp accepts any string;
- what cannot be held (lookarounds, anchors inside, a quote in a positive
  class) is a SchemaError, where llama.cpp accepts any string.
"""
from __future__ import annotations

import json
import re

from .schema_nodes import SchemaError

NON_LITERAL = set("|.()[]{}*+?^$")
ESCAPED_IN_REGEXPS_BUT_NOT_IN_LITERALS = set("^$.[](){}|*+?")
DOT = '[^"\\\\\\x7F\\x00-\\x1F]'                 # one character JSON writes as itself
JSON_ESCAPED = '"\\\\\\x7F\\x00-\\x1F'             # what a negated class leaves out besides its own
SHORTHANDS = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " "}   # JSON escapes \t \n \r: a raw space only


def json_text(ch: str) -> str:
    """One character as a GBNF literal's body, the way a JSON string writes it."""
    s = json.dumps(ch, ensure_ascii=False)[1:-1]
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _escape_length(p: str, i: int) -> int:
    """The length of a GBNF escape at p[i] (llama.cpp's gbnf_escape_length), 0 if none."""
    if i + 1 >= len(p) or p[i] != "\\":
        return 0
    n = {"x": 2, "u": 4, "U": 8}.get(p[i + 1])
    if n is None:
        return 2 if p[i + 1] in 'trn\\"[]-' else 0
    return 2 + n if re.fullmatch(r"[0-9a-fA-F]{%d}" % n, p[i + 2:i + 2 + n]) else 0


def _escaped_char(esc: str) -> str:
    """The character a GBNF/regex escape stands for."""
    if esc[1] in "xuU":
        return chr(int(esc[2:], 16))
    return {"t": "\t", "r": "\r", "n": "\n"}.get(esc[1], esc[1])


def _literal_escape(esc: str) -> str:
    """A GBNF escape inside a literal: kept where JSON writes the character as itself."""
    ch = _escaped_char(esc)
    if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
        return json_text(ch)
    return esc


def repetition(item: str, lo: int, hi: int | None, sep: str = "") -> str:
    """llama.cpp's build_repetition: `item` lo..hi times (hi None: unbounded)."""
    if hi == 0:
        return ""
    if lo == 0 and hi == 1:
        return item + "?"
    if not sep:
        if lo == 1 and hi is None:
            return item + "+"
        if lo == 0 and hi is None:
            return item + "*"
        return item + "{" + str(lo) + "," + ("" if hi is None else str(hi)) + "}"
    result = item + " " + repetition(f"({sep} {item})", max(lo - 1, 0), None if hi is None else hi - 1)
    return f"({result})?" if lo == 0 else result


class _Pattern:
    def __init__(self, conv, body: str, name: str):
        self.conv, self.p, self.name, self.i, self.depth = conv, body, name, 0, 0
        self.sub_rules: dict[str, str] = {}

    def fail(self, why: str):
        raise SchemaError(f"{self.name}: pattern cannot be enforced ({why})")

    def transform(self) -> tuple[str, bool]:
        seq: list[tuple[str, bool]] = []
        p, n = self.p, len(self.p)
        while self.i < n:
            c = p[self.i]
            if c == ".":
                seq.append((self.conv.add_rule("dot", DOT), False))
                self.i += 1
            elif c == "(":
                self.i += 1
                if self.i < n and p[self.i] == "?":
                    if self.i + 1 < n and p[self.i + 1] == ":":
                        self.i += 2
                    else:
                        self.fail("lookarounds, named groups and inline flags are not covered")
                self.depth += 1
                if self.depth > 100:
                    self.fail("nesting too deep")
                seq.append(("(" + _to_rule(self.transform()) + ")", False))
            elif c == ")":
                self.i += 1
                if self.depth == 0:
                    self.fail("unbalanced parentheses")
                self.depth -= 1
                return _join(seq)
            elif c in "^$":
                self.fail("an anchor inside the pattern")
            elif c == "[":
                seq.append((self.bracket(), False))
            elif c == "|":
                seq.append(("|", False))
                self.i += 1
            elif c in "*+?":
                if not seq:
                    self.fail("nothing to repeat")
                seq[-1] = (_to_rule(seq[-1]) + c, False)
                self.i += 1
            elif c == "{":
                self.curly(seq)
            elif c == "\\" and self.i + 1 < n and p[self.i + 1].lower() in SHORTHANDS:
                cls = SHORTHANDS[p[self.i + 1].lower()]
                seq.append((f"[{cls}]" if p[self.i + 1].islower() else f"[^{cls}{JSON_ESCAPED}]", False))
                self.i += 2
            else:
                seq.append((self.literal(), True))
        return _join(seq)

    def bracket(self) -> str:
        p, n = self.p, len(self.p)
        negated = self.i + 1 < n and p[self.i + 1] == "^"
        self.i += 2 if negated else 1
        body = ""
        while self.i < n and p[self.i] != "]":
            if p[self.i] == "\\":
                if self.i + 1 < n and p[self.i + 1] in SHORTHANDS:
                    body += SHORTHANDS[p[self.i + 1]]
                    self.i += 2
                    continue
                k = _escape_length(p, self.i)
                if k == 0:
                    self.fail(f"escape {p[self.i:self.i + 2]} in a character class")
                ch = _escaped_char(p[self.i:self.i + k])
                if not negated and (ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F):
                    self.fail(f"{p[self.i:self.i + k]} in a character class is written escaped in JSON")
                body += p[self.i:self.i + k]
                self.i += k
            else:
                if not negated and (p[self.i] == '"' or ord(p[self.i]) < 0x20):
                    self.fail("a quote or control character in a character class is written escaped in JSON")
                body += p[self.i]
                self.i += 1
        if self.i >= n:
            self.fail("unterminated character class")
        self.i += 1
        return f"[^{body}{JSON_ESCAPED}]" if negated else f"[{body}]"

    def curly(self, seq: list) -> None:
        p = self.p
        end = p.find("}", self.i)
        if end < 0:
            self.fail("unterminated curly brackets")
        nums = p[self.i + 1:end].split(",")
        self.i = end + 1
        if len(nums) not in (1, 2) or not all(re.fullmatch(r"\d*", x) for x in nums) or not nums[0] + nums[-1]:
            self.fail(f"quantifier {{{','.join(nums)}}}")
        lo = int(nums[0]) if nums[0] else 0
        hi = lo if len(nums) == 1 else (int(nums[1]) if nums[1] else None)
        if not seq:
            self.fail("nothing to repeat")
        sub, is_literal = seq[-1]
        if not is_literal:
            if sub not in self.sub_rules:
                self.sub_rules[sub] = ""
                self.sub_rules[sub] = self.conv.add_rule(f"{self.name}-{len(self.sub_rules)}", sub)
            sub = self.sub_rules[sub]
        seq[-1] = (repetition(f'"{sub}"' if is_literal else sub, lo, hi), False)

    def literal(self) -> str:
        p, n, out = self.p, len(self.p), ""
        while self.i < n:
            c = p[self.i]
            if c == "\\":
                if self.i == n - 1:
                    self.fail("trailing backslash")
                nxt = p[self.i + 1]
                if nxt.lower() in SHORTHANDS:
                    break
                if nxt in ESCAPED_IN_REGEXPS_BUT_NOT_IN_LITERALS:
                    out += nxt
                    self.i += 2
                else:
                    k = _escape_length(p, self.i)
                    if k == 0:
                        self.fail(f"escape {p[self.i:self.i + 2]}")
                    out += _literal_escape(p[self.i:self.i + k])
                    self.i += k
            elif c not in NON_LITERAL and (self.i == n - 1 or not out or p[self.i + 1] == "."
                                           or p[self.i + 1] not in NON_LITERAL):
                out += json_text(c) if (c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F) else c
                self.i += 1
            else:
                break
        if not out:
            self.fail(f"unsupported character {p[self.i]!r}")
        return out


def _to_rule(item: tuple[str, bool]) -> str:
    return f'"{item[0]}"' if item[1] else item[0]


def _join(seq: list[tuple[str, bool]]) -> tuple[str, bool]:
    """The sequence with consecutive literals merged (llama.cpp's join_seq)."""
    out, lit = [], ""
    for s, is_literal in seq:
        if is_literal:
            lit += s
            continue
        if lit:
            out.append(f'"{lit}"')
            lit = ""
        out.append(s)
    if lit:
        out.append(f'"{lit}"')
    return " ".join(out), False


def pattern_rule(conv, pattern: str, name: str) -> str:
    """The rule (added to `conv`) of the JSON strings whose text matches `pattern`."""
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not re.search(r"(?<!\\)(\\\\)*\\\$$", pattern)
    body = pattern[1 if start else 0:len(pattern) - 1 if end else len(pattern)]
    parser = _Pattern(conv, body, name)
    rule = _to_rule(parser.transform())
    if parser.i < len(body) or parser.depth != 0:
        parser.fail("unbalanced parentheses")
    if start and end:
        return conv.add_rule(name, f'"\\"" ({rule}) "\\""')
    char = conv.primitive("char")
    head, tail = ("" if start else f"{char}* "), ("" if end else f" {char}*")
    return conv.add_rule(name, f'"\\"" {head}({rule}){tail} "\\""')
