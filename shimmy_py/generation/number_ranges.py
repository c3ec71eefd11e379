"""Bounded JSON numbers as GBNF: the integers (or decimals) between a
minimum and a maximum, exclusive or not, written digit by digit (no leading
zeros, at most 16 digits), for grammar.py's integer and number schemas."""
from __future__ import annotations

import math


def signed_range(lo, hi, lo_x: bool, hi_x: bool, fraction: bool) -> str | None:
    """A GBNF expression for the JSON numbers x with lo <= x <= hi (< with
    the exclusive flags; None: unbounded), integers unless `fraction`. Each
    sign's magnitudes are a range of integer parts, with a fraction only
    where every fraction stays inside: sound, and tight for integers.
    None: no such number."""
    alts = []
    if hi is None or hi > 0 or (hi == 0 and not hi_x):
        alts.append(magnitudes(max(lo, 0) if lo is not None else 0, lo_x and lo is not None and lo >= 0,
                               hi, hi_x, fraction))
    if lo is None or lo < 0:
        neg_lo = -hi if hi is not None and hi < 0 else 0
        alts.append('"-" ( ' + magnitudes(neg_lo, hi_x and hi is not None and hi < 0,
                                         -lo if lo is not None else None, lo_x, fraction) + " )")
    alts = [a for a in alts if "EMPTY" not in a]
    if not alts:
        return None
    return " | ".join(f"( {a} )" for a in alts)


def magnitudes(lo, lo_x: bool, hi, hi_x: bool, fraction: bool) -> str:
    """Non-negative decimals m, lo <= m <= hi (lo >= 0; hi None: unbounded)."""
    int_lo = math.floor(lo) + 1 if lo_x and lo == math.floor(lo) else math.ceil(lo)
    int_hi = None if hi is None else (math.ceil(hi) - 1 if hi_x and hi == math.ceil(hi) else math.floor(hi))
    if int_hi is not None and int_hi < int_lo:
        return "EMPTY"
    alts = [int_range(int_lo, int_hi)]
    if fraction:
        frac_hi = None if hi is None else math.floor(hi) - 1         # I + f < I + 1 <= hi
        if frac_hi is None or frac_hi >= int_lo:
            alts.append(f'( {int_range(int_lo, frac_hi)} ) "." [0-9]{{1,16}}')
    return " | ".join(f"( {a} )" for a in alts)


def int_range(lo: int, hi: int | None) -> str:
    """Decimal integers from lo to hi (0 <= lo; hi None: up to 16 digits), no leading zeros."""
    if hi is None:
        top = 10 ** len(str(lo)) - 1
        more = f"[1-9] [0-9]{{{len(str(lo))},15}}"
        return f"( {int_range(lo, top)} ) | {more}" if len(str(lo)) < 16 else int_range(lo, top)
    alts = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        a = lo if n == len(str(lo)) else 10 ** (n - 1)
        b = hi if n == len(str(hi)) else 10 ** n - 1
        alts.append(_between(str(a), str(b)))
    return " | ".join(f"( {a} )" for a in alts)


def _between(a: str, b: str) -> str:
    """Digit strings of len(a) == len(b) from a to b."""
    if a == b:
        return f'"{a}"'
    if len(a) == 1:
        return f"[{a}-{b}]"
    if a[0] == b[0]:
        return f'"{a[0]}" ( {_between(a[1:], b[1:])} )'
    n = len(a) - 1
    alts = [f'"{a[0]}" ( {_between(a[1:], "9" * n)} )']
    if int(b[0]) - int(a[0]) > 1:
        alts.append(f"[{int(a[0]) + 1}-{int(b[0]) - 1}] [0-9]{{{n}}}")
    alts.append(f'"{b[0]}" ( {_between("0" * n, b[1:])} )')
    return " | ".join(alts)
