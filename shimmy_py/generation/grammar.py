"""JSON Schema to a GBNF grammar (the format llama.cpp's grammar sampler
enforces token by token): llama.cpp's converter, `json_schema_to_grammar`
in common/json-schema-to-grammar.cpp (which lives in its `common` library,
not in libllama), written again here so that a schema's grammar is the text
llama.cpp writes for it: the same rules and names, the same `space`, nothing
before the root value or after it. tests/test_schema_grammar.py holds it to
llama.cpp's own test file, case by case.

It differs where llama.cpp's grammar would admit documents the schema
refuses, and says so: schema_nodes.py refuses what cannot be held; a
number's bounds are held (llama.cpp drops them); `date` holds each month's
days (llama.cpp's allows June 31, which validators refuse); `email` is
held; schema_patterns.py matches a pattern in the string as JSON writes it.
"""
from __future__ import annotations

import json
import re

from .number_ranges import INT64_MAX, INT64_MIN, min_max_int, signed_range
from .schema_nodes import Node, SchemaError, read
from .schema_patterns import pattern_rule, repetition

__all__ = ["SchemaError", "schema_to_grammar", "JSON_OBJECT", "Grammar", "literal"]

SPACE = '| " " | "\\n"{1,2} [ \\t]{0,20}'
PRIMITIVES = {     # name: (body, the rules it uses)
    "boolean": ('("true" | "false")', ()),
    "decimal-part": ("[0-9]{1,16}", ()),
    "integral-part": ("[0] | [1-9] [0-9]{0,15}", ()),
    "number": ('("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?',
               ("integral-part", "decimal-part")),
    "integer": ('("-"? integral-part)', ("integral-part",)),
    "value": ("object | array | string | number | boolean | null",
              ("object", "array", "string", "number", "boolean", "null")),
    "object": ('"{" space ( string ":" space value ("," space string ":" space value)* )? space "}"',
               ("string", "value")),
    "array": ('"[" space ( value ("," space value)* )? space "]"', ("value",)),
    "uuid": ('"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
             '[0-9a-fA-F]{12} "\\""', ()),
    "char": ('[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})', ()),
    "string": ('"\\"" char* "\\""', ("char",)),
    "null": ('"null"', ()),
    # llama.cpp's string formats; `date` holds each month's own days and February 29th in leap years only
    "date": ('[0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] ) '
             '| ( "0" [469] | "11" ) "-" ( "0" [1-9] | [1-2] [0-9] | "30" ) '
             '| "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) '
             '| ( [0-9]{2} ( "0" [48] | [2468] [048] | [13579] [26] ) '
             '| ( "0" [48] | [2468] [048] | [13579] [26] ) "00" ) "-02-29"', ()),
    "time": ('([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
             '( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )', ()),
    "date-time": ('date "T" time', ("date", "time")),
    "date-string": ('"\\"" date "\\""', ("date",)),
    "time-string": ('"\\"" time "\\""', ("time",)),
    "date-time-string": ('"\\"" date-time "\\""', ("date-time",)),
    "email-string": ('"\\"" [a-zA-Z0-9._%+-]+ "@" [a-zA-Z0-9.-]+ "." [a-zA-Z]{2,} "\\""', ()),
}
RESERVED = {"root", *PRIMITIVES}
COMMA = '"," space'


def literal(text: str) -> str:
    """A GBNF literal matching `text` exactly (llama.cpp's format_literal)."""
    return '"' + re.sub(r'[\r\n"\\]', lambda m: {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}[m.group()],
                        text) + '"'


def _dump(value) -> str:
    """JSON text of a value as nlohmann's dump() writes it (compact)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Grammar:
    """Rules by name, built from schemas and literal rules (llama.cpp's
    common_grammar_builder: add_rule, add_schema); text() lists them by name."""

    def __init__(self):
        self.rules: dict[str, str] = {"space": SPACE}
        self._refs: dict[tuple[int, str], str] = {}

    def text(self) -> str:
        return "".join(f"{k} ::= {self.rules[k]}\n" for k in sorted(self.rules))

    def add_rule(self, name: str, body: str) -> str:
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", name)
        if self.rules.get(name, body) == body:
            self.rules[name] = body
            return name
        i = 0
        while self.rules.get(f"{name}{i}", body) != body:
            i += 1
        self.rules[f"{name}{i}"] = body
        return f"{name}{i}"

    def primitive(self, name: str, as_name: str | None = None) -> str:
        body, deps = PRIMITIVES[name]
        key = self.add_rule(as_name or name, body)
        for dep in deps:
            if dep not in self.rules:
                self.primitive(dep)
        return key

    def add_schema(self, name: str, schema, root=None) -> str:
        """The rule of the JSON documents valid for `schema` (name "" or "root":
        the root), its $refs into `root` (default: itself)."""
        return self.visit(read(schema, root), "" if name == "root" else name)

    def visit(self, node: Node, name: str) -> str:
        rule = name + "-" if name in RESERVED else name or "root"
        sub = name + "-" if name else ""
        kind = node.kind
        if kind == "ref":
            return self.add_rule(rule, self._ref(node))
        if kind == "any_of":
            alts = [self.visit(c, f"{name}{'-' if name else 'alternative-'}{i}") for i, c in enumerate(node.children)]
            return self.add_rule(rule, " | ".join(alts))
        if kind == "all_of":
            return self._all_of(node, name, rule)
        if kind == "const":
            return self.add_rule(rule, literal(_dump(node.values[0])))
        if kind == "enum":
            return self.add_rule(rule, "(" + " | ".join(literal(_dump(v)) for v in node.values) + ")")
        if kind == "object":
            if not node.properties and node.additional is not None and node.additional.kind == "any":
                return self.add_rule(rule, self.primitive("object"))
            return self.add_rule(rule, self._object([(k, s) for k, s, _ in node.properties],
                                                    {k for k, _, r in node.properties if r}, name, node.additional))
        if kind == "tuple":
            items = ' "," space '.join(self.visit(c, f"{sub}tuple-{i}") for i, c in enumerate(node.children))
            return self.add_rule(rule, f'"[" space {items} space "]"')
        if kind == "array":
            if node.items.kind == "any" and node.min_items == 0 and node.max_items < 0:
                return self._primitive_as(rule, "array")
            item = self.visit(node.items, f"{sub}item")
            hi = None if node.max_items < 0 else node.max_items
            return self.add_rule(rule, f'"[" space {repetition(item, node.min_items, hi, COMMA)} space "]"')
        if kind == "string":
            return self._string(node, rule)
        if kind == "integer":
            if (node.minimum, node.maximum) == (INT64_MIN, INT64_MAX):
                return self._primitive_as(rule, "integer")
            return self.add_rule(rule, f"({min_max_int(node.minimum, node.maximum)})")
        if kind == "number" and node.bounds is not None:
            expr = signed_range(*node.bounds, fraction=True)
            if expr is None:
                raise SchemaError(f"{rule}: no number lies within {node.bounds[0]} and {node.bounds[1]}")
            return self.add_rule(rule, f"( {expr} )")
        if kind in ("number", "boolean", "null"):
            return self._primitive_as(rule, kind)
        return self.add_rule(rule, self.primitive("value"))            # any

    def _primitive_as(self, rule: str, kind: str) -> str:
        return self.primitive(kind, "root" if rule == "root" else kind)

    def _string(self, node: Node, rule: str) -> str:
        if node.pattern:
            return pattern_rule(self, node.pattern, rule)
        if node.format == "uuid":
            return self._primitive_as(rule, "uuid")
        if node.format:
            return self.add_rule(rule, self.primitive(node.format + "-string"))
        if node.min_length > 0 or node.max_length >= 0:
            char = self.primitive("char")
            hi = None if node.max_length < 0 else node.max_length
            return self.add_rule(rule, f'"\\"" {repetition(char, node.min_length, hi)} "\\""')
        return self._primitive_as(rule, "string")

    def _ref(self, node: Node) -> str:
        key = (id(node.doc), node.ref)
        if key in self._refs:
            return self._refs[key]
        name = "ref" + re.sub(r"[^a-zA-Z0-9-]+", "-", node.ref[node.ref.find("#") + 1:])
        base, i = name, 0
        while name in self.rules:                  # the same name from another schema of this grammar
            name, i = f"{base}-{i}", i + 1
        self._refs[key] = name                     # a recursive reference meets it while it is being built
        self._refs[key] = self.visit(node.target, name)
        return self._refs[key]

    def _all_of(self, node: Node, name: str, rule: str) -> str:
        props: list[tuple[str, Node]] = []
        required: set[str] = set()
        enums: dict[str, int] = {}

        def add(part: Node, is_required: bool):
            if part.kind == "ref":
                if part.target is not None:
                    add(part.target, is_required)
            elif part.kind == "object":
                for k, s, _ in part.properties:
                    props.append((k, s))
                    if is_required:
                        required.add(k)
            elif part.kind == "enum":
                for v in part.values:
                    enums[literal(_dump(v))] = enums.get(literal(_dump(v)), 0) + 1

        for child in node.children:
            for alt in child.children if child.kind == "any_of" else [child]:
                add(alt, child.kind != "any_of")
        common = [v for v, n in sorted(enums.items()) if n == len(node.children)]
        if common:
            return self.add_rule(rule, "(" + " | ".join(common) + ")")
        if enums:
            raise SchemaError(f"{rule}: allOf's enums have no value in common")
        return self.add_rule(rule, self._object(props, required, name, None))

    def _object(self, props: list[tuple[str, Node]], required: set[str], name: str, additional: Node | None) -> str:
        sub = name + "-" if name else ""
        kv, req, opt = {}, [], []
        for key, schema in props:
            value = self.visit(schema, sub + key)
            kv[key] = self.add_rule(f"{sub}{key}-kv", f"{literal(_dump(key))} space \":\" space {value}")
            (req if key in required else opt).append(key)
        if additional is not None:
            value = self.visit(additional, f"{sub}additional-value") if additional.kind != "any" \
                else self.primitive("value")
            names = [k for k, _ in props]
            k_rule = self.add_rule(f"{sub}additional-k", self._not_strings(names)) if names \
                else self.primitive("string")
            kv["*"] = self.add_rule(f"{sub}additional-kv", f'{k_rule} ":" space {value}')
            opt.append("*")
        if not req and not opt:
            return '"{" space "}"'
        out = '"{" space ' + ' "," space '.join(kv[k] for k in req)
        if opt:
            out += " (" + (' "," space ( ' if req else "")
            out += " | ".join(self._optional(opt[i:], False, kv, sub) for i in range(len(opt)))
            out += (" )" if req else "") + " )?"
        return out + ' space "}"'

    def _optional(self, keys: list[str], first_optional: bool, kv: dict, sub: str) -> str:
        k = keys[0]
        comma = f'( "," space {kv[k]} )'
        if first_optional:
            out = comma + ("*" if k == "*" else "?")
        else:
            out = kv[k] + (f" {comma}*" if k == "*" else "")
        if len(keys) > 1:
            out += " " + self.add_rule(f"{sub}{k}-rest", self._optional(keys[1:], True, kv, sub))
        return out

    def _not_strings(self, strings: list[str]) -> str:
        """The JSON strings that are none of `strings` (llama.cpp's _not_strings, over a trie)."""
        trie: dict = {}
        for s in strings:
            node = trie
            for ch in s:
                node = node.setdefault(ch, {})
            node[None] = True
        char = self.primitive("char")

        def visit(node: dict) -> str:
            alts, rejects = [], ""
            for ch in sorted(k for k in node if k is not None):
                rejects += ch
                child = node[ch]
                rest = f" ({visit(child)})" if any(k is not None for k in child) else f" {char}+"
                alts.append(f"[{ch}]{rest}")
            if rejects:
                alts.append(f'[^"{rejects}] {char}*')
            return " | ".join(alts)

        return f'["] ( {visit(trie)} ){"" if None in trie else "?"} ["]'


def schema_to_grammar(schema) -> str:
    """The GBNF grammar whose documents are JSON values valid for `schema`."""
    g = Grammar()
    g.add_schema("", schema)
    return g.text()


JSON_OBJECT = schema_to_grammar({"type": "object"})
