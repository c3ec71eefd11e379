"""Out-parameters: one "call, grow the buffer, call again" helper for the
llama.cpp functions that write into a caller's buffer and report the size
they needed (tokenize, detokenize, token pieces, chat templates)."""
from __future__ import annotations

import ctypes
from typing import Callable

from ..errors import NativeError


def grown(fill: Callable[[object, int], int], make: Callable[[int], object], cap: int, what: str,
          negative_is_size: bool = True) -> tuple[object, int]:
    """Calls `fill(buf, cap)` on `make(cap)`. llama.cpp answers the length it
    wrote, or the length it needs: as -n (`negative_is_size`) or as a result
    above `cap`. Grows once to that and calls again; returns (buf, n)."""
    for _ in range(2):
        buf = make(cap)
        n = fill(buf, cap)
        if n < 0 and not negative_is_size:
            raise NativeError(f"{what} failed ({n})")
        if 0 <= n <= cap:
            return buf, n
        cap = -n if n < 0 else n
    raise NativeError(f"{what} asked for a larger buffer twice")


def char_buffer(cap: int):
    return ctypes.create_string_buffer(max(1, cap))
