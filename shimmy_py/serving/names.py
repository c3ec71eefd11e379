"""Model names as the server answers to them, and discovery in model folders.

A file answers to its stem, lowercased (`DeepSeek-MoE-16B-F16.gguf` ->
`deepseek-moe-16b-f16`), and to that name less a trailing precision or
quantisation suffix when no other file claims it (`deepseek-moe-16b`).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ShimmyError

_SUFFIX = re.compile(r"[-_.](f32|f16|bf16|q\d(_[a-z0-9]+)*|iq\d(_[a-z0-9]+)*|mxfp4)$")


def base_name(path: str | Path) -> str:
    return Path(path).name.removesuffix(".gguf").lower()


def short_name(name: str) -> str | None:
    m = _SUFFIX.search(name)
    return name[:m.start()] if m else None


def discover(dirs) -> list[Path]:
    """GGUF files in the given folders (not recursive), sorted."""
    found = []
    for d in dirs:
        p = Path(d).expanduser()
        if p.is_dir():
            found += sorted(x for x in p.glob("*.gguf") if x.is_file())
    return found


def name_table(paths) -> dict[str, Path]:
    """name -> file, with short names only where unambiguous."""
    table = {base_name(p): Path(p) for p in paths}
    shorts: dict[str, list[Path]] = {}
    for name, p in list(table.items()):
        s = short_name(name)
        if s and s not in table:
            shorts.setdefault(s, []).append(p)
    table.update({s: ps[0] for s, ps in shorts.items() if len(ps) == 1})
    return table


def resolve_model(model: str, dirs) -> Path:
    """--model PATH or NAME -> a file (NAME looked up in --model-dirs)."""
    p = Path(model).expanduser()
    if p.is_file():
        return p
    table = name_table(discover(dirs))
    if model.lower() in table:
        return table[model.lower()]
    known = ", ".join(sorted(table)) or "none"
    raise ShimmyError(f"model {model!r} is neither a file nor a name found in {list(dirs) or 'no --model-dirs'} "
                      f"(known: {known})")
