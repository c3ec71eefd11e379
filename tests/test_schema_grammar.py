"""Our JSON-schema grammars against llama.cpp's own: every case of the pinned
source's tests/test-json-schema-to-grammar.cpp (native/build.sh copies it
into the build's share/) gives the grammar that file expects, line for line
as llama.cpp's test compares them, or fails where it expects a failure.

Six cases differ on purpose, each because llama.cpp's grammar admits
documents the schema refuses (DIFFERENT below says which and why; grammar.py
and schema_patterns.py say how), and the test holds each to what it is.
The grammars of the Python API, the HTTP dialects' response_format /
format / json_object and the tool-call sections are all written by
grammar.Grammar, which this checks.
"""
from __future__ import annotations

import json
import re

import pytest

from shimmy_py.generation.grammar import JSON_OBJECT, SchemaError, schema_to_grammar
from shimmy_py.synthetic.vocabularies import vocabulary_path

CASE = re.compile(r'test\(\{\s*(SUCCESS|FAILURE),\s*"((?:[^"\\]|\\.)*)",\s*(?:R"""\((.*?)\)"""|"((?:[^"\\]|\\.)*)"),'
                  r'\s*(?:R"""\((.*?)\)"""|"")\s*\}\);', re.S)


def corpus() -> list[tuple[str, bool, str, str]]:
    """(name, expected to succeed, schema text, expected grammar) of each case."""
    text = (vocabulary_path("qwen2").parent / "test-json-schema-to-grammar.cpp").read_text(encoding="utf-8")
    cases = [(m.group(2), m.group(1) == "SUCCESS", m.group(3) if m.group(3) is not None else m.group(4),
              m.group(5) or "") for m in CASE.finditer(text)]
    assert len(cases) == text.count("    test({"), "a case of the file was not read"
    return cases


def trim(grammar: str) -> str:
    """As llama.cpp's test compares grammars: ends stripped, each line's indent dropped."""
    return re.sub(r"(^|\n)[ \t]+", r"\1", grammar.strip(" \n\r\t"))


CALENDAR = ('date ::= [0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] ) '
            '| ( "0" [469] | "11" ) "-" ( "0" [1-9] | [1-2] [0-9] | "30" ) | "02-" ( "0" [1-9] | "1" [0-9] | '
            '"2" [0-8] ) ) | ( [0-9]{2} ( "0" [48] | [2468] [048] | [13579] [26] ) | ( "0" [48] | [2468] [048] | '
            '[13579] [26] ) "00" ) "-02-29"')
# name: (why it differs, the lines of our grammar that differ from llama.cpp's, or None: we refuse the schema)
DIFFERENT = {
    "exotic formats": ("llama.cpp's date admits June 31 and February 29 of any year", [CALENDAR]),
    "regexp quote": ('a quote in the string is \\" in the JSON text: llama.cpp\'s grammar writes """, not JSON',
                     ['root ::= "\\"" ("\\\\\\"") "\\""']),
    "regexp": ("llama.cpp's . admits a raw quote or backslash, which ends the string or breaks the JSON",
               ['dot ::= [^"\\\\\\x7F\\x00-\\x1F]']),
    "regexp with unsupported shorthand": ("llama.cpp drops a pattern with \\w (any string); we hold it",
                                          ['root ::= "\\"" (root-1{3,3} [a-zA-Z0-9_]) "\\""', "root-1 ::= [0-9]"]),
    "unanchored regexp": ("llama.cpp drops an unanchored pattern (any string); we hold it as a search",
                          ['root ::= "\\"" char* ([0-9]+) char* "\\""']),
    "unsupported regexp in a property": ("a lookahead cannot be held: llama.cpp drops it (any string), we refuse",
                                         None),
}


@pytest.fixture(scope="module")
def cases():
    return corpus()


def test_the_corpus_is_llama_cpps_whole_test_file(cases):
    assert len(cases) >= 80
    assert set(DIFFERENT) <= {name for name, *_ in cases}


def test_every_case_gives_llama_cpps_grammar_or_its_failure(cases):
    checked = 0
    for name, ok, schema, expected in cases:
        if name in DIFFERENT:
            continue
        if not ok:
            with pytest.raises(SchemaError):
                schema_to_grammar(json.loads(schema))
            continue
        assert trim(schema_to_grammar(json.loads(schema))) == trim(expected), name
        checked += 1
    assert checked >= 70


@pytest.mark.parametrize("name", sorted(DIFFERENT))
def test_where_we_differ_it_is_only_where_llama_cpps_grammar_admits_invalid_documents(cases, name):
    _, ok, schema, expected = next(c for c in cases if c[0] == name)
    why, ours = DIFFERENT[name]
    if ours is None:
        with pytest.raises(SchemaError, match="lookarounds"):
            schema_to_grammar(json.loads(schema))
        return
    got, want = trim(schema_to_grammar(json.loads(schema))).split("\n"), trim(expected).split("\n")
    changed = [line for line in got if line not in want]
    assert changed == ours, why
    kept = {line.split(" ::= ")[0] for line in got} - {line.split(" ::= ")[0] for line in ours}
    assert [line for line in want if line.split(" ::= ")[0] in kept] == [line for line in got if line not in ours]


def test_json_object_is_llama_servers_object_grammar():
    """response_format json_object and Ollama's format "json": llama-server's {"type": "object"}."""
    assert JSON_OBJECT.startswith("array ::= ")
    assert "root ::= object\n" in JSON_OBJECT
    assert 'object ::= "{" space ( string ":" space value ("," space string ":" space value)* )? space "}"' \
        in JSON_OBJECT
