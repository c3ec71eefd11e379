"""Bounded JSON numbers as GBNF, for grammar.py.

Integers: `min_max_int`, llama.cpp's `build_min_max_int`
(common/json-schema-to-grammar.cpp) line for line, so that an integer
schema's grammar is the text llama.cpp writes. Numbers: llama.cpp drops a
number's bounds; `signed_range` keeps them (the decimals between a minimum
and a maximum, exclusive or not, digit by digit, at most 16 digits)."""
from __future__ import annotations

import math

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1


def min_max_int(lo: int, hi: int, decimals_left: int = 16, top_level: bool = True) -> str:
    """The integers lo..hi (INT64_MIN / INT64_MAX: unbounded on that side)."""
    out: list[str] = []
    _min_max(lo, hi, out, decimals_left, top_level)
    return "".join(out)


def _digit_range(out: list[str], a: str, b: str) -> None:
    out.append(f"[{a}]" if a == b else f"[{a}-{b}]")


def _more_digits(out: list[str], lo: int, hi: int) -> None:
    out.append("[0-9]")
    if lo == hi == 1:
        return
    out.append("{" + str(lo))
    if hi != lo:
        out.append("," + ("" if hi == INT64_MAX else str(hi)))
    out.append("}")


def _uniform_range(out: list[str], a: str, b: str) -> None:
    """Digit strings of one length from a to b."""
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    if i > 0:
        out.append(f'"{a[:i]}"')
    if i >= len(a) or i >= len(b):
        return
    if i > 0:
        out.append(" ")
    n = len(a) - i - 1
    if n == 0:
        out.append(f"[{a[i]}-{b[i]}]")
        return
    a_sub, b_sub, zeros, nines = a[i + 1:], b[i + 1:], "0" * n, "9" * n
    reached = False
    out.append("(")
    if a_sub == zeros:
        _digit_range(out, a[i], chr(ord(b[i]) - 1))
        out.append(" ")
        _more_digits(out, n, n)
    else:
        out.append(f"[{a[i]}] (")
        _uniform_range(out, a_sub, nines)
        out.append(")")
        if ord(a[i]) < ord(b[i]) - 1:
            out.append(" | ")
            if b_sub == nines:
                _digit_range(out, chr(ord(a[i]) + 1), b[i])
                reached = True
            else:
                _digit_range(out, chr(ord(a[i]) + 1), chr(ord(b[i]) - 1))
            out.append(" ")
            _more_digits(out, n, n)
    if not reached:
        out.append(" | ")
        _digit_range(out, b[i], b[i])
        out.append(" ")
        _uniform_range(out, zeros, b_sub)
    out.append(")")


def _min_max(lo: int, hi: int, out: list[str], decimals_left: int, top_level: bool) -> None:
    has_min, has_max = lo != INT64_MIN, hi != INT64_MAX
    if has_min and has_max:
        if lo < 0 and hi < 0:
            out.append('"-" (')
            _min_max(-hi, -lo, out, decimals_left, True)
            out.append(")")
            return
        if lo < 0:
            out.append('"-" (')
            _min_max(0, -lo, out, decimals_left, True)
            out.append(") | ")
            lo = 0
        lo_s, hi_s = str(lo), str(hi)
        for digits in range(len(lo_s), len(hi_s)):
            _uniform_range(out, lo_s, "9" * digits)
            lo_s = "1" + "0" * digits
            out.append(" | ")
        _uniform_range(out, lo_s, hi_s)
        return
    less = max(decimals_left - 1, 1)
    if has_min:
        if lo < 0:
            out.append('"-" (')
            _min_max(INT64_MIN, -lo, out, decimals_left, False)
            out.append(") | [0] | [1-9] ")
            _more_digits(out, 0, decimals_left - 1)
        elif lo == 0:
            if top_level:
                out.append("[0] | [1-9] ")
                _more_digits(out, 0, less)
            else:
                _more_digits(out, 1, decimals_left)
        elif lo <= 9:
            c, start = str(lo), "1" if top_level else "0"
            if c > start:
                _digit_range(out, start, chr(ord(c) - 1))
                out.append(" ")
                _more_digits(out, 1, less)
                out.append(" | ")
            _digit_range(out, c, "9")
            out.append(" ")
            _more_digits(out, 0, less)
        else:
            s = str(lo)
            c = s[0]
            if c > "1":
                _digit_range(out, "1" if top_level else "0", chr(ord(c) - 1))
                out.append(" ")
                _more_digits(out, len(s), less)
                out.append(" | ")
            _digit_range(out, c, c)
            out.append(" (")
            _min_max(int(s[1:]), INT64_MAX, out, less, False)
            out.append(")")
            if c < "9":
                out.append(" | ")
                _digit_range(out, chr(ord(c) + 1), "9")
                out.append(" ")
                _more_digits(out, len(s) - 1, less)
        return
    if has_max:
        if hi >= 0:
            if top_level:
                out.append('"-" [1-9] ')
                _more_digits(out, 0, less)
                out.append(" | ")
            _min_max(0, hi, out, decimals_left, True)
        else:
            out.append('"-" (')
            _min_max(-hi, INT64_MAX, out, decimals_left, False)
            out.append(")")
        return
    raise ValueError("min_max_int needs a minimum or a maximum")


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
