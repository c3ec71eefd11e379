"""Checks the ctypes struct declarations against the C compiler's layout.

native/build.sh compiles native/probe.c against the headers of the libraries it
builds and stores its output (sizeof and offsetof of every declared struct) as
layout.json beside them. A mismatch means the library is of another llama.cpp
version than the binding: that is an error naming both, never a crash later.
"""
from __future__ import annotations

import ctypes
import json
from pathlib import Path

from ..errors import NativeError
from .pin import LLAMA_CPP_PYTHON_VERSION


def ctypes_layout(struct: type[ctypes.Structure]) -> dict:
    return {"size": ctypes.sizeof(struct),
            "fields": {name: getattr(struct, name).offset for name, *_ in struct._fields_}}


def mismatches(structs, probed: dict) -> list[str]:
    """Differences between the ctypes `structs` and the probe's JSON."""
    problems = []
    for struct in structs:
        name = struct.__name__
        if name not in probed:
            problems.append(f"{name}: not in the probe output")
            continue
        mine, theirs = ctypes_layout(struct), probed[name]
        if mine["size"] != theirs["size"]:
            problems.append(f"{name}: sizeof {theirs['size']} in C, {mine['size']} in the binding")
        if set(mine["fields"]) != set(theirs["fields"]):
            diff = sorted(set(mine["fields"]) ^ set(theirs["fields"]))
            problems.append(f"{name}: fields differ ({', '.join(diff)})")
        for field, offset in mine["fields"].items():
            if field in theirs["fields"] and theirs["fields"][field] != offset:
                problems.append(f"{name}.{field}: offset {theirs['fields'][field]} in C, {offset} in the binding")
    return problems


def verify(structs, layout_path: Path, library_version: str) -> None:
    """Raises NativeError unless every struct matches layout.json."""
    if not layout_path.exists():
        raise NativeError(f"{layout_path} is missing: the libraries were not built by native/build.sh "
                          "(run `make native`)")
    try:
        probed = json.loads(layout_path.read_text())
    except (OSError, ValueError) as e:
        raise NativeError(f"{layout_path}: unreadable struct layout ({e}); rebuild: native/build.sh --force") from None
    problems = mismatches(structs, probed)
    if problems:
        raise NativeError(
            f"the libraries in {layout_path.parent} ({library_version}) do not match this binding, "
            f"written for llama.cpp from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}: "
            + "; ".join(problems))
