"""Model names as the server answers to them.

A file answers to its stem, lowercased (`DeepSeek-MoE-16B-F16.gguf` ->
`deepseek-moe-16b-f16`; an Ollama model to its NAME:TAG), and to that name
less a trailing precision or quantisation suffix when no other model claims
it (`deepseek-moe-16b`). Where models are found is discovery.py's job.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import ShimmyError
from .discovery import Found, discover

_SUFFIX = re.compile(r"[-_.](f32|f16|bf16|q\d(_[a-z0-9]+)*|iq\d(_[a-z0-9]+)*|mxfp4)$")


def base_name(path: str | Path) -> str:
    return Path(path).name.removesuffix(".gguf").lower()


def short_name(name: str) -> str | None:
    m = _SUFFIX.search(name)
    return name[:m.start()] if m else None


def name_table(models) -> dict[str, Path]:
    """name -> file, for files or discovered models, with short names only where unambiguous."""
    table = {}
    for m in models:
        name, path = (m.name, m.path) if isinstance(m, Found) else (base_name(m), Path(m))
        table.setdefault(name, path)
    shorts: dict[str, list[Path]] = {}
    for name, p in list(table.items()):
        s = short_name(name)
        if s and s not in table:
            shorts.setdefault(s, []).append(p)
    table.update({s: ps[0] for s, ps in shorts.items() if len(ps) == 1})
    return table


def resolve_model(model: str, dirs) -> Path:
    """--model PATH or NAME -> a file (NAME looked up among the discovered models)."""
    p = Path(model).expanduser()
    if p.is_file():
        return p
    table = name_table(discover(dirs))
    if model.lower() in table:
        return table[model.lower()]
    known = ", ".join(sorted(table)) or "none"
    raise ShimmyError(f"model {model!r} is neither a file nor the name of a discovered model (known: {known})")
