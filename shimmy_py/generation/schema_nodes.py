"""A JSON schema read into typed nodes, as llama.cpp's
`common_chat_schema_from_json` (common/json-schema.cpp) reads it: the same
choice of node for each combination of keywords, so that grammar.py writes
the grammar llama.cpp writes.

Where llama.cpp's reading would let a constraint fall (an unknown keyword,
a format it does not know, bounds on a number, allOf over what is not an
object, a pattern beside a length, a required property that is not
declared), the grammar would admit documents the schema refuses: those are a
SchemaError naming the keyword here, never dropped. Two are kept rather
than refused: a number's bounds (Node.bounds) and the email format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import GenerationError
from .number_ranges import INT64_MAX, INT64_MIN


class SchemaError(GenerationError):
    """A JSON schema uses what the grammar cannot enforce."""


ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly", "strict", "discriminator", "nullable"}
HANDLED = {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
           "minLength", "maxLength", "format", "pattern", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
           "$defs", "definitions", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_ABSENT = object()
FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5", "email"}


@dataclass(eq=False)
class Node:
    """One schema node; the fields its kind uses (llama.cpp's node structs in one)."""
    kind: str       # any ref any_of all_of const enum null boolean number integer string array tuple object
    children: list[Node] = field(default_factory=list)      # any_of / all_of alternatives, tuple items
    values: list = field(default_factory=list)              # const (one) and enum values
    ref: str = ""
    target: Node | None = None
    doc: object = None                                      # the document a ref belongs to
    minimum: int = INT64_MIN                                # integer bounds, inclusive
    maximum: int = INT64_MAX
    bounds: tuple | None = None                             # number: (lo, hi, lo exclusive, hi exclusive)
    pattern: str = ""
    format: str = ""
    min_length: int = 0
    max_length: int = -1
    items: Node | None = None
    min_items: int = 0
    max_items: int = -1
    properties: list[tuple[str, Node, bool]] = field(default_factory=list)   # (name, schema, required)
    additional: Node | None = None                          # None: no other property allowed


def read(schema, root=None) -> Node:
    """The node of `schema`, its $refs resolved within `root` (default: itself)."""
    return _Reader(schema if root is None else root).build(schema)


class _Reader:
    def __init__(self, root):
        self.root = root
        self.refs: dict[str, Node | None] = {}
        self.pending: list[Node] = []

    def build(self, schema) -> Node:
        node = self.node(schema, "#")
        for ref in self.pending:
            ref.target = self.refs[ref.ref]
        return node

    @staticmethod
    def fail(path: str, msg: str):
        raise SchemaError(f"JSON schema error at {path}: {msg}")

    def node(self, schema, path: str) -> Node:
        if schema is True:
            return Node("any")
        if not isinstance(schema, dict):
            self.fail(path, f"a schema must be an object or true, got {schema!r}")
        unknown = sorted(k for k in schema if k not in HANDLED | ANNOTATIONS)
        if unknown:
            self.fail(path, f"the schema keyword {unknown[0]!r} cannot be enforced by the grammar")
        if "$ref" in schema:
            return self.reference(schema["$ref"], path)
        if "oneOf" in schema or "anyOf" in schema:
            key = "oneOf" if "oneOf" in schema else "anyOf"
            return Node("any_of", self.alternatives(schema[key], f"{path}/{key}"))
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                self.fail(path, "type must not be empty")
            return Node("any_of", [self.node({**schema, "type": t}, f"{path}/type/{i}") for i, t in enumerate(kind)])
        if "const" in schema:
            return Node("const", values=[schema["const"]])
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                self.fail(path, "enum must be a non-empty array")
            return Node("enum", values=list(schema["enum"]))
        if kind is not None and not isinstance(kind, str):
            self.fail(path, "type must be a string or an array of strings")
        has_properties = "properties" in schema or schema.get("additionalProperties", True) is not True
        if "allOf" in schema and (has_properties or kind not in (None, "object")):
            self.fail(path, "allOf beside properties or a type other than object cannot be enforced "
                            "(the grammar merges objects' properties and enums' values only)")
        if kind is None:
            if has_properties:
                return self.object(schema, path)
            if "allOf" in schema:
                return self.all_of(schema["allOf"], f"{path}/allOf")
            if "items" in schema or "prefixItems" in schema:
                return self.array(schema, path)
            if any(k in schema for k in ("pattern", "minLength", "maxLength", "format")):
                return self.string(schema, path)
            return Node("any")
        if kind == "object":
            return self.all_of(schema["allOf"], f"{path}/allOf") if "allOf" in schema else self.object(schema, path)
        simple = {"string": self.string, "array": self.array, "integer": self.integer, "number": self.number,
                  "boolean": lambda s, p: Node("boolean"), "null": lambda s, p: Node("null")}
        if kind not in simple:
            self.fail(path, f"unrecognized type {kind}")
        return simple[kind](schema, path)

    def reference(self, ref, path: str) -> Node:
        if not isinstance(ref, str):
            self.fail(path, "$ref must be a string")
        if not ref.startswith("#/"):
            self.fail(path, f"unsupported $ref {ref}, only references into the same document are supported")
        if ref not in self.refs:
            self.refs[ref] = None                 # reserved: a cycle back to this $ref stops here
            self.refs[ref] = self.node(self.resolve(ref, path), ref)
        node = Node("ref", ref=ref, doc=self)
        self.pending.append(node)
        return node

    def resolve(self, ref: str, path: str):
        target = self.root
        for sel in ref[2:].split("/"):
            if isinstance(target, dict) and sel in target:
                target = target[sel]
            elif isinstance(target, list) and sel.isdigit() and int(sel) < len(target):
                target = target[int(sel)]
            else:
                self.fail(path, f"cannot resolve $ref {ref}, {sel} not found")
        return target

    def alternatives(self, alts, path: str) -> list[Node]:
        if not isinstance(alts, list):
            self.fail(path, "must be an array of schemas")
        if not alts:
            self.fail(path, "must not be empty")
        return [self.node(alt, f"{path}/{i}") for i, alt in enumerate(alts)]

    def all_of(self, alts, path: str) -> Node:
        node = Node("all_of", self.alternatives(alts, path))
        for i, child in enumerate(node.children):
            for part, in_any_of in _all_of_parts(child, self):
                if part.kind not in ("object", "enum"):
                    self.fail(f"{path}/{i}", f"allOf merges objects and enums only, not {part.kind}")
                if in_any_of and any(required for _, _, required in part.properties):
                    self.fail(f"{path}/{i}", "an anyOf inside allOf adds its objects' properties as optional: "
                                             "required properties there cannot be enforced")
        return node

    def object(self, schema: dict, path: str) -> Node:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            self.fail(path, "properties must be an object")
        required = schema.get("required", [])
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        missing = [r for r in required if r not in props]
        if missing:
            self.fail(path, f"required property {missing[0]!r} is not among its properties")
        node = Node("object", properties=[(k, self.node(v, f"{path}/properties/{k}"), k in required)
                                          for k, v in props.items()])
        extra = schema.get("additionalProperties", "absent")
        if extra is True or (extra == "absent" and "properties" not in schema):
            node.additional = Node("any")
        elif isinstance(extra, dict):
            node.additional = self.node(extra, f"{path}/additionalProperties")
        elif extra not in (False, "absent"):
            self.fail(path, "additionalProperties must be a boolean or a schema")
        return node

    def array(self, schema: dict, path: str) -> Node:
        items, prefix = schema.get("items", _ABSENT), schema.get("prefixItems", _ABSENT)
        if isinstance(prefix, list) and items is not _ABSENT:     # 2020-12: the tuple, then items
            if items is not False:
                self.fail(path, "prefixItems followed by more items of a schema cannot be enforced")
            key = "prefixItems"
        else:                                                       # llama.cpp: "items" wins
            key = "items" if items is not _ABSENT else "prefixItems"
        chosen = schema.get(key, _ABSENT)
        if isinstance(chosen, list) or chosen is False:
            chosen = chosen or []
            n, (lo, hi) = len(chosen), self.between(schema, "minItems", "maxItems", path)
            if n < lo or 0 <= hi < n:
                self.fail(path, f"a tuple of {n} items cannot meet minItems {lo} / maxItems {hi}")
            return Node("tuple", [self.node(s, f"{path}/{key}/{i}") for i, s in enumerate(chosen)])
        node = Node("array", items=Node("any") if chosen is _ABSENT else self.node(chosen, f"{path}/{key}"))
        node.min_items, node.max_items = self.between(schema, "minItems", "maxItems", path)
        return node

    def string(self, schema: dict, path: str) -> Node:
        node = Node("string")
        if "pattern" in schema:
            if not isinstance(schema["pattern"], str):
                self.fail(path, "pattern must be a string")
            node.pattern = schema["pattern"]
        if "format" in schema:
            if not isinstance(schema["format"], str):
                self.fail(path, "format must be a string")
            if schema["format"] not in FORMATS:
                self.fail(path, f"string format {schema['format']!r} cannot be enforced (covered: "
                                f"{', '.join(sorted(f for f in FORMATS if not f[-1].isdigit()))})")
            node.format = "uuid" if schema["format"].startswith("uuid") else schema["format"]
        node.min_length, node.max_length = self.between(schema, "minLength", "maxLength", path)
        lengths = "minLength" in schema or "maxLength" in schema
        if (node.pattern and (node.format or lengths)) or (node.format and lengths):
            self.fail(path, "a pattern, a format and lengths cannot be enforced together (one of them only)")
        return node

    def integer(self, schema: dict, path: str) -> Node:
        node = Node("integer")
        if "minimum" in schema:
            node.minimum = math.ceil(self.bound(schema, "minimum", path))
        elif "exclusiveMinimum" in schema:
            node.minimum = math.floor(self.bound(schema, "exclusiveMinimum", path)) + 1
        if "maximum" in schema:
            node.maximum = math.floor(self.bound(schema, "maximum", path))
        elif "exclusiveMaximum" in schema:
            node.maximum = math.ceil(self.bound(schema, "exclusiveMaximum", path)) - 1
        if node.minimum > node.maximum:
            self.fail(path, f"no integer lies between minimum {node.minimum} and maximum {node.maximum}")
        if node.minimum < INT64_MIN or node.maximum > INT64_MAX:
            self.fail(path, "integer bounds must lie within 64 bits")
        return node

    def number(self, schema: dict, path: str) -> Node:
        lo, hi, lo_x, hi_x = None, None, False, False
        for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            if schema.get(key) is None:
                continue
            v = self.bound(schema, key, path)
            if abs(v) >= 1e15:
                self.fail(path, f"a number's bound ({key}) must be below 1e15 in size")
            if key.endswith("inimum"):
                lo, lo_x = v, key.startswith("exclusive")
            else:
                hi, hi_x = v, key.startswith("exclusive")
        if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_x or hi_x))):
            self.fail(path, f"no number lies between minimum {lo} and maximum {hi}")
        return Node("number", bounds=None if (lo, hi) == (None, None) else (lo, hi, lo_x, hi_x))

    def bound(self, schema: dict, key: str, path: str):
        v = schema[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(path, f"a bound ({key}) must be a finite number, got {v!r}")
        return v

    def between(self, schema: dict, lo_key: str, hi_key: str, path: str) -> tuple[int, int]:
        """A count's bounds (minItems / maxItems, minLength / maxLength); -1: no upper bound."""
        lo, hi = self.count(schema, lo_key, path, 0), self.count(schema, hi_key, path, -1)
        if 0 <= hi < lo:
            self.fail(path, f"bounds {lo_key} {lo} and {hi_key} {hi} are not valid")
        return lo, hi

    def count(self, schema: dict, key: str, path: str, default: int) -> int:
        v = schema.get(key, default)
        if key in schema and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            self.fail(path, f"{key} must be a non-negative integer")
        return v


def _all_of_parts(node: Node, reader: _Reader | None = None, in_any_of: bool = False):
    """The (node, inside anyOf) parts an allOf child contributes, its $refs followed."""
    if node.kind == "ref":
        target = node.target if node.target is not None else (reader.refs.get(node.ref) if reader else None)
        if target is not None:
            yield from _all_of_parts(target, reader, in_any_of)
    elif node.kind == "any_of" and not in_any_of:
        for alt in node.children:
            yield from _all_of_parts(alt, reader, True)
    else:
        yield node, in_any_of
