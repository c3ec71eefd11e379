"""JSON Schema to a GBNF grammar (llama.cpp's grammar format, which its
grammar sampler enforces token by token), written for this project (llama.cpp's
own converter lives in its `common` library, not in libllama).

Covered: object (properties, required, additionalProperties: false, true or
a schema; undeclared properties only when it says so), array (items,
prefixItems, minItems, maxItems), string (minLength, maxLength, format:
date, time, date-time, uuid, email; pattern: anchored regular expressions
of literals, classes, groups, alternation and quantifiers), number and
integer (minimum, maximum, exclusive ones: integers exactly, numbers by
their integer part, a fraction only where it cannot cross a bound), boolean, null, enum, const, type lists,
anyOf/oneOf, allOf of objects, $ref into $defs/definitions (Pydantic's
shape, recursion included), {} and true (any JSON value). A keyword that
would constrain the document and is not covered is an error naming it
(SchemaError), never dropped: an answer must validate against its schema.
"""
from __future__ import annotations

import json
import math
import re

from ..errors import GenerationError
from .number_ranges import signed_range


class SchemaError(GenerationError):
    """A JSON schema uses what the converter cannot enforce."""


SPACE = '| " " | "\\n" [ \\t]{0,20}'
PRIMITIVES = {
    "space": SPACE,
    "boolean": '("true" | "false") space',
    "null": '"null" space',
    "char": '[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": '"\\"" char* "\\"" space',
    "integral-part": '[0] | [1-9] [0-9]{0,15}',
    "decimal-part": '[0-9]{1,16}',
    "number": '("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)? space',
    "integer": '("-"? integral-part) space',
    "value": 'object | array | string | number | boolean | null',
    "object": '"{" space ( string ":" space value ("," space string ":" space value)* )? "}" space',
    "array": '"[" space ( value ("," space value)* )? "]" space',
}
FORMATS = {
    # a calendar date: each month's own days, February's 29th in leap years only (a year divisible by 4,
    # and by 400 where it ends in 00), which llama.cpp's converter lets through and validators refuse
    "date": '( [0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) '
            '| ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) '
            '| "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) '
            '| ( [0-9]{2} ( "0" [48] | [2468] [048] | [13579] [26] ) '
            '| ( "0" [48] | [2468] [048] | [13579] [26] ) "00" ) "-02-29" )',
    "time": '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
            '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',      # RFC 3339: the offset is required
    "uuid": '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}',
    "email": '[a-zA-Z0-9._%+-]+ "@" [a-zA-Z0-9.-]+ "." [a-zA-Z]{2,}',
}
FORMATS["date-time"] = f'{FORMATS["date"]} "T" {FORMATS["time"]}'
COMMA = '"," space'
ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly", "strict", "discriminator", "nullable"}
HANDLED = {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
           "minLength", "maxLength", "format", "pattern", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
           "$defs", "definitions", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}


def literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") \
        .replace("\t", "\\t") + '"'


class _Converter:
    def __init__(self, root: dict):
        self.root, self.rules = root, {}
        self._refs: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "r"
        key, i = name, 1
        while key in self.rules and self.rules[key] != body:
            i += 1
            key = f"{name}-{i}"
        self.rules[key] = body
        return key

    def primitive(self, name: str) -> str:
        if self.rules.get(name) == PRIMITIVES[name]:
            return name
        self.rules[name] = PRIMITIVES[name]           # before its dependencies: value and object refer to each other
        deps = {"string": ["char"], "number": ["integral-part", "decimal-part"], "integer": ["integral-part"],
                "value": ["object", "array", "string", "number", "boolean", "null"],
                "object": ["string", "value"], "array": ["value"]}
        for dep in deps.get(name, []):
            self.primitive(dep)
        self.rules[name] = PRIMITIVES[name]
        if name not in ("space", "char", "integral-part", "decimal-part"):
            self.rules["space"] = SPACE
        return name

    def visit(self, schema, name: str) -> str:
        if schema is True or schema == {}:
            return self.primitive("value")
        if not isinstance(schema, dict):
            raise SchemaError(f"{name}: a schema must be an object or true, got {schema!r}")
        unknown = sorted(k for k in schema if k not in HANDLED | ANNOTATIONS)
        if unknown:
            raise SchemaError(f"{name}: the schema keyword {unknown[0]!r} cannot be enforced by the grammar")
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "const" in schema:
            return self.add(name, literal(json.dumps(schema["const"], ensure_ascii=False)) + " space")
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                raise SchemaError(f"{name}: enum must be a non-empty list")
            alts = " | ".join(literal(json.dumps(v, ensure_ascii=False)) for v in schema["enum"])
            self.primitive("space")
            return self.add(name, f"({alts}) space")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                alts = [self.visit(s, f"{name}-{i}") for i, s in enumerate(schema[key])]
                return self.add(name, " | ".join(alts))
        if "allOf" in schema:
            return self.visit(self.merge(schema, name), name)
        kind = schema.get("type")
        if isinstance(kind, list):
            alts = [self.visit({**schema, "type": k}, f"{name}-{k}") for k in kind]
            return self.add(name, " | ".join(alts))
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
            if kind is None:
                return self.primitive("value")
        handler = {"object": self.object, "array": self.array, "string": self.string, "integer": self.integer,
                   "number": self.number, "boolean": lambda s, n: self.primitive("boolean"),
                   "null": lambda s, n: self.primitive("null")}.get(kind)
        if handler is None:
            raise SchemaError(f"{name}: unknown type {kind!r}")
        return handler(schema, name)

    def ref(self, ref: str) -> str:
        if ref in self._refs:
            return self._refs[ref]
        m = re.fullmatch(r"#/(\$defs|definitions)/(.+)", ref) if isinstance(ref, str) else None
        target = self.root.get(m.group(1), {}).get(m.group(2)) if m else None
        if target is None:
            raise SchemaError(f"$ref {ref!r} names no definition of this schema (only #/$defs/NAME)")
        rule = re.sub(r"[^a-zA-Z0-9-]+", "-", m.group(2)).strip("-") or "ref"
        rule = f"ref-{rule}"
        self._refs[ref] = rule
        self.rules[rule] = ""                         # reserved: a recursive reference finds it
        body = self.visit(target, rule + "-body")
        self.rules[rule] = body
        return rule

    def merge(self, schema: dict, name: str) -> dict:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.resolve(part)
            if not isinstance(part, dict) or part.get("type", "object") != "object":
                raise SchemaError(f"{name}: allOf is supported for object schemas only")
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged["type"] = "object"
        return merged

    def resolve(self, schema):
        while isinstance(schema, dict) and "$ref" in schema:
            m = re.fullmatch(r"#/(\$defs|definitions)/(.+)", schema["$ref"])
            schema = self.root.get(m.group(1), {}).get(m.group(2)) if m else None
            if schema is None:
                raise SchemaError("allOf: a $ref names no definition of this schema")
        return schema

    def object(self, schema: dict, name: str) -> str:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError(f"{name}: properties must be an object")
        required = [k for k in schema.get("required", []) if k in props]
        missing = [k for k in schema.get("required", []) if k not in props]
        extra = schema.get("additionalProperties", False)
        if missing and extra is False:
            raise SchemaError(f"{name}: required property {missing[0]!r} is not among its properties")
        self.primitive("space")
        kv = {}
        for key, sub in props.items():
            value = self.visit(sub, f"{name}-{key}")
            kv[key] = self.add(f"{name}-{key}-kv", f'{literal(json.dumps(key, ensure_ascii=False))} space ":" '
                                                   f"space {value}")
        optional = [k for k in props if k not in required]
        if extra is not False:
            value = self.primitive("value") if extra is True else self.visit(extra, f"{name}-additional")
            self.primitive("string")
            kv["*"] = self.add(f"{name}-additional-kv", f'string ":" space {value}')
            optional.append("*")
        tail = None
        for i in range(len(optional) - 1, -1, -1):        # optional i may appear, then optionals after it
            this = kv[optional[i]]
            if optional[i] == "*":
                this = f'{this} ("," space {this})*'
            tail = self.add(f"{name}-opt-{i}", f'{this} ( "," space {tail} )? | {tail}' if tail else this)
        body = ' "," space '.join(kv[k] for k in required)
        if body and tail:
            body = f'{body} ( "," space {tail} )?'
        elif tail:
            body = f"( {tail} )?"
        return self.add(name, f'"{{" space {body} "}}" space' if body else '"{" space "}" space')

    def array(self, schema: dict, name: str) -> str:
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        self.primitive("space")
        if "prefixItems" in schema:
            items = [self.visit(s, f"{name}-{i}") for i, s in enumerate(schema["prefixItems"])]
            inner = ' "," space '.join(items)
            return self.add(name, f'"[" space {inner} "]" space' if items else '"[" space "]" space')
        item = self.visit(schema.get("items", True), f"{name}-item")
        return self.add(name, f'"[" space {repeat(item, lo, hi, COMMA)} "]" space')

    def string(self, schema: dict, name: str) -> str:
        self.primitive("space")
        if "format" in schema:
            if schema["format"] not in FORMATS:
                raise SchemaError(f"{name}: string format {schema['format']!r} cannot be enforced "
                                  f"(covered: {', '.join(sorted(FORMATS))})")
            return self.add(name, f'"\\"" {FORMATS[schema["format"]]} "\\"" space')
        if "pattern" in schema:
            return self.add(name, f'"\\"" {pattern_to_gbnf(schema["pattern"], name)} "\\"" space')
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if lo == 0 and hi is None:
            return self.primitive("string")
        self.primitive("char")
        return self.add(name, f'"\\"" {repeat("char", lo, hi)} "\\"" space')

    def number(self, schema: dict, name: str) -> str:
        bounds = _bounds(schema, name)
        if bounds == (None, None, False, False):
            return self.primitive("number")
        return self.bounded(bounds, name, fraction=True)

    def integer(self, schema: dict, name: str) -> str:
        bounds = _bounds(schema, name)
        if bounds == (None, None, False, False):
            return self.primitive("integer")
        return self.bounded(bounds, name, fraction=False)

    def bounded(self, bounds: tuple, name: str, fraction: bool) -> str:
        expr = signed_range(*bounds, fraction=fraction)
        if expr is None:
            raise SchemaError(f"{name}: no {'number' if fraction else 'integer'} lies between {bounds[0]} and "
                              f"{bounds[1]}")
        self.primitive("space")
        return self.add(name, f"( {expr} ) space")


def _bounds(schema: dict, name: str) -> tuple:
    """(lo, hi, lo exclusive, hi exclusive) of a number or integer schema."""
    lo, hi, lo_x, hi_x = schema.get("minimum"), schema.get("maximum"), False, False
    if schema.get("exclusiveMinimum") is not None:
        lo, lo_x = schema["exclusiveMinimum"], True
    if schema.get("exclusiveMaximum") is not None:
        hi, hi_x = schema["exclusiveMaximum"], True
    for v in (lo, hi):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or abs(v) >= 1e15):
            raise SchemaError(f"{name}: a bound must be a finite number below 1e15 in size, got {v!r}")
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_x or hi_x))):
        raise SchemaError(f"{name}: no number lies between minimum {lo} and maximum {hi}")
    return lo, hi, lo_x, hi_x


def repeat(item: str, lo: int, hi: int | None, sep: str = "") -> str:
    """`item` lo to hi times (hi None: unbounded), separated by `sep`."""
    if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
        raise SchemaError(f"bounds {lo}..{hi} are not valid")
    if not sep:
        return f"{item}{{{lo},{'' if hi is None else hi}}}" if (lo, hi) != (0, None) else f"{item}*"
    if hi == 0:
        return ""
    more = f"( {sep} {item} ){{{max(0, lo - 1)},{'' if hi is None else hi - 1}}}"
    return f"{item} {more}" if lo >= 1 else f"( {item} {more} )?"


_REGEX_TOKEN = re.compile(r"\\[dDwWsS.\\/^$|?*+()\[\]{}-]|\\u[0-9a-fA-F]{4}|\[(?:\\.|[^\]])*\]|\{\d+(,\d*)?\}|.",
                          re.S)
# characters a JSON string carries as themselves (a quote, a backslash or a control character is escaped)
_PLAIN = '"\\\\\\x00-\\x1F\\x7F'
_CLASSES = {r"\d": "[0-9]", r"\w": "[a-zA-Z0-9_]", r"\s": '[ ]', ".": f"[^{_PLAIN}]",
            r"\D": f"[^0-9{_PLAIN}]", r"\W": f"[^a-zA-Z0-9_{_PLAIN}]", r"\S": f"[^ {_PLAIN}]"}


def _json_char(c: str) -> str:
    """One character of a pattern as the JSON string spells it (escaped where JSON escapes)."""
    return literal(json.dumps(c, ensure_ascii=False)[1:-1])


def _bracket(t: str, name: str) -> str:
    """A [...] class; a negated one excludes what JSON escapes too."""
    body, negated = t[1:-1], t.startswith("[^")
    if negated:
        body = body[1:]
    if "\\p" in body or "[:" in body or any(c in body for c in (r"\D", r"\W", r"\S")):
        raise SchemaError(f"{name}: character class {t!r} cannot be enforced")
    for cls, spelled in ((r"\d", "0-9"), (r"\w", "a-zA-Z0-9_"), (r"\s", " ")):
        body = body.replace(cls, spelled)
    if any(c in body for c in '"\\') and not negated:
        raise SchemaError(f"{name}: a quote or backslash in character class {t!r} cannot be enforced")
    return f"[^{body}{_PLAIN}]" if negated else f"[{body}]"


def pattern_to_gbnf(pattern: str, name: str = "pattern") -> str:
    """An anchored regular expression (^...$, as JSON Schema writes them) as
    a GBNF expression: literals, classes, groups, alternation, quantifiers."""
    if not isinstance(pattern, str) or not pattern.startswith("^") or not pattern.endswith("$"):
        raise SchemaError(f"{name}: a pattern must be anchored (^...$) to be enforced, got {pattern!r}")
    tokens = [m.group(0) for m in _REGEX_TOKEN.finditer(pattern[1:-1])]
    out, pos = _alternation(tokens, 0, name)
    if pos != len(tokens):
        raise SchemaError(f"{name}: unbalanced parenthesis in pattern {pattern!r}")
    return f"({out})"


def _alternation(tokens: list[str], pos: int, name: str) -> tuple[str, int]:
    branches, seq = [], []
    while pos < len(tokens):
        t = tokens[pos]
        if t == ")":
            break
        if t == "|":
            branches.append(" ".join(seq) or '""')
            seq, pos = [], pos + 1
            continue
        if t == "(":
            if pos + 1 < len(tokens) and tokens[pos + 1] == "?":
                if pos + 2 < len(tokens) and tokens[pos + 2] == ":":
                    pos += 2
                else:
                    raise SchemaError(f"{name}: lookarounds and named groups in a pattern cannot be enforced")
            inner, pos = _alternation(tokens, pos + 1, name)
            if pos >= len(tokens) or tokens[pos] != ")":
                raise SchemaError(f"{name}: unbalanced parenthesis in a pattern")
            atom, pos = f"({inner})", pos + 1
        elif t in ("^", "$") or t.startswith("\\b") or t in (r"\B",):
            raise SchemaError(f"{name}: anchors inside a pattern cannot be enforced")
        elif t in _CLASSES:
            atom, pos = _CLASSES[t], pos + 1
        elif t.startswith("[") and len(t) > 1:
            atom, pos = _bracket(t, name), pos + 1
        elif t.startswith("\\u"):
            atom, pos = _json_char(chr(int(t[2:], 16))), pos + 1
        elif t.startswith("\\"):
            atom, pos = _json_char(t[1]), pos + 1
        elif t in ("*", "+", "?") or t.startswith("{"):
            raise SchemaError(f"{name}: a quantifier with nothing to repeat in a pattern")
        else:
            atom, pos = _json_char(t), pos + 1
        if pos < len(tokens) and (tokens[pos] in ("*", "+", "?") or re.fullmatch(r"\{\d+(,\d*)?\}", tokens[pos])):
            q = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] in ("?", "+"):
                raise SchemaError(f"{name}: lazy or possessive quantifiers in a pattern cannot be enforced")
            atom = f"{atom}{q}" if q in ("*", "+", "?") else f"{atom}{q}"
        seq.append(atom)
    branches.append(" ".join(seq) or '""')
    return " | ".join(branches), pos


def schema_to_grammar(schema) -> str:
    """The GBNF grammar whose documents are JSON values valid for `schema`."""
    c = _Converter(schema if isinstance(schema, dict) else {})
    root = c.visit(schema, "root-value")
    rules = {"root": f"{root}", **{k: v for k, v in c.rules.items() if k != "root"}}
    return "\n".join(f"{k} ::= {v}" for k, v in rules.items()) + "\n"


JSON_OBJECT = schema_to_grammar({"type": "object", "additionalProperties": True})

