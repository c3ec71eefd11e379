"""Sizes in bytes, both ways, for every layer (shared like errors.py): what
users type ("8GiB", "24 GB", "512MiB") read as bytes, and bytes written as
people read them ("8.00 GiB")."""
from __future__ import annotations

import re

from .errors import PlacementError

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}
MAX_SIZE = 1 << 60              # an exbibyte: larger figures are typing mistakes, not memory
GiB, MiB = 2**30, 2**20


def parse_size(value: int | str) -> int:
    """Bytes from 8589934592, "8GiB", "8 GB", "512MiB"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SIZE:
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value)) if not isinstance(value, bool) else None
    if not m or m.group(2).lower() not in _UNITS:
        raise PlacementError(f"cannot read size {value!r}: use e.g. 8GiB, 24GB or 512MiB")
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not size <= MAX_SIZE:
        raise PlacementError(f"size {value!r} is larger than any memory (at most 1 EiB)")
    return int(size)


def gib(n: int | float, width: int = 0) -> str:
    """"12.34 GiB" (the number right-aligned in `width` characters)."""
    return f"{n / GiB:{width}.2f} GiB"


def mib(n: int | float, digits: int = 0) -> str:
    """"512 MiB"."""
    return f"{n / MiB:.{digits}f} MiB"


def readable(n: int | float) -> str:
    """GiB from one GiB up, MiB below ("1.53 GiB", "54.6 MiB")."""
    return gib(n) if n >= GiB else mib(n, 1)
