"""Structured output: every document generated under a JSON schema validates
against it (the `jsonschema` package judges), for the shapes clients send:
objects with required and optional properties, enums and consts, arrays
with bounds and prefixItems, nested objects, anyOf / oneOf / type lists,
$ref into $defs as Pydantic writes them (recursion included), string
lengths, formats and patterns, integer and number bounds (exclusive
ones too), additionalProperties.

The model is `synth --behaviour tool-caller`: its weights prefer closing a
string, object or array as soon as the grammar allows, so that every
document ends, and leave the rest to a small random part, so that sampled
runs (temperature 1, several seeds) take different branches, lengths and
characters. The grammar alone decides what is valid.
"""
from __future__ import annotations

import enum
import json
from typing import Literal, Optional

import jsonschema
import pytest
from pydantic import BaseModel, Field

from shimmy_py import Model
from shimmy_py.generation.grammar import SchemaError, schema_to_grammar
from shimmy_py.synthetic.behaviours import tool_caller


class Color(str, enum.Enum):
    red = "red"
    green = "green"


class Address(BaseModel):
    street: str
    zip: str = Field(pattern=r"^[0-9]{5}$")


class Person(BaseModel):
    name: str = Field(min_length=2, max_length=12)
    age: int = Field(ge=0, le=150)
    color: Color
    nickname: Optional[str] = None
    address: Address
    others: list[Address] = Field(default_factory=list, max_length=2)
    kind: Literal["a", "b"] = "a"


class Tree(BaseModel):
    label: str
    children: list["Tree"] = Field(default_factory=list, max_length=2)


SCHEMAS = {
    "object-required-optional": {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}, "d": {"type": "null"},
        "e": {"type": "number"}}, "required": ["a", "b"], "additionalProperties": False},
    "enum-const": {"type": "object", "properties": {"e": {"enum": ["x", 1, None, True]}, "k": {"const": {"v": [1]}}},
                   "required": ["e", "k"]},
    "array-bounds": {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5},
                     "minItems": 2, "maxItems": 4},
    "prefix-items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
    "nested": {"type": "object", "properties": {"o": {"type": "object", "properties": {
        "p": {"type": "array", "items": {"type": "object", "properties": {"q": {"type": "string"}},
                                         "required": ["q"]}}}, "required": ["p"]}}, "required": ["o"]},
    "any-one-of": {"type": "object", "properties": {
        "u": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
        "w": {"oneOf": [{"type": "object", "properties": {"t": {"const": "x"}}, "required": ["t"]},
                        {"type": "array", "maxItems": 0}]},
        "v": {"type": ["string", "null"]}}, "required": ["u", "w", "v"]},
    "strings": {"type": "object", "properties": {
        "len": {"type": "string", "minLength": 3, "maxLength": 5},
        "date": {"type": "string", "format": "date"}, "time": {"type": "string", "format": "time"},
        "dt": {"type": "string", "format": "date-time"}, "uuid": {"type": "string", "format": "uuid"},
        "pat": {"type": "string", "pattern": "^(ab|c[de]+)-[0-9]{2,3}$"}},
        "required": ["len", "date", "time", "dt", "uuid", "pat"]},
    "integer-bounds": {"type": "object", "properties": {
        "small": {"type": "integer", "minimum": 3, "maximum": 7}, "big": {"type": "integer", "minimum": 100},
        "neg": {"type": "integer", "maximum": -10}, "open": {"type": "integer", "exclusiveMinimum": -3,
                                                             "exclusiveMaximum": 250}},
        "required": ["small", "big", "neg", "open"]},
    "number-bounds": {"type": "object", "properties": {
        "ratio": {"type": "number", "minimum": 0, "maximum": 1}, "temp": {"type": "number", "minimum": -273.15},
        "neg": {"type": "number", "exclusiveMaximum": -0.5}, "mid": {"type": "number", "minimum": -2.5,
                                                                     "maximum": 3.5}},
        "required": ["ratio", "temp", "neg", "mid"]},
    "additional-schema": {"type": "object", "properties": {"fixed": {"type": "integer"}},
                          "additionalProperties": {"type": "string"}, "required": ["fixed"]},
    "any-value": {"type": "object", "properties": {"x": {}}, "required": ["x"]},
    "pydantic-person": Person.model_json_schema(),
    "pydantic-recursive": Tree.model_json_schema(),
}
FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER   # date-time and time as RFC 3339


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    with Model(tool_caller(tmp_path_factory.mktemp("schema") / "tool-caller.gguf"), n_ctx=2048, n_threads=2) as m:
        yield m


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_generated_document_validates(model, name):
    schema = SCHEMAS[name]
    for seed in range(4):
        r = model.generate("Answer in JSON:", json_schema=schema, temperature=1.0, seed=seed, max_tokens=600)
        assert r.finish_reason == "stop", (seed, r.text)
        jsonschema.validate(json.loads(r.text), schema, format_checker=FORMAT_CHECKER)


@pytest.mark.parametrize("schema, keyword", [
    ({"type": "number", "minimum": "0"}, "bound"),
    ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer lies between"),
    ({"type": "number", "minimum": 5, "exclusiveMaximum": 5}, "no number lies between"),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "allOf merges objects and enums only"),
    ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "together"),
    ({"type": "string", "pattern": "^(?!x)a+$"}, "lookarounds"),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, "prefixItems followed"),
    ({"type": "object", "properties": {"a": {}}, "required": ["a", "b"]}, "'b' is not among its properties"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
    ({"not": {"type": "string"}}, "not"),
    ({"type": "integer", "multipleOf": 3}, "multipleOf"),
    ({"type": "string", "format": "hostname"}, "hostname"),
    ({"$ref": "#/$defs/missing"}, "missing"),
])
def test_what_cannot_be_enforced_is_an_error_naming_it(schema, keyword):
    with pytest.raises(SchemaError, match=keyword):
        schema_to_grammar(schema)
