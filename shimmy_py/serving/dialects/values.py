"""The parsers dialects' tables name (jobs.Field): each takes a JSON value
and the field's name as the client spelled it, and returns the job's value
or raises a 400 naming that field. Per-request lists are bounded: a flood of
stop strings would hold a handler (every generated piece is matched against
every stop string)."""
from __future__ import annotations

import math
from typing import Any, Callable

from ...generation.sampling import BOUNDS
from ..durations import BadDuration, parse_duration
from ..http.errors import ApiError, bad

MAX_STOPS = 16             # OpenAI allows 4
MAX_STOP_CHARS = 1024
MAX_LOGIT_BIAS = 4096
MAX_TOP_LOGPROBS = 20      # OpenAI's bound
MAX_CHOICES = 16           # n

Parser = Callable[[Any, str], Any]


def utf8(value: str, name: str) -> str:
    """A string that UTF-8 can carry (JSON's \\ud800 escapes decode to lone
    surrogates, which cannot be encoded for llama.cpp)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"'{name}' holds a lone UTF-16 surrogate: not text", name) from None
    return value


def _typed(value, name: str, kinds: tuple):
    if isinstance(value, bool) and bool not in kinds:
        raise bad(f"'{name}' must be {' or '.join(k.__name__ for k in kinds)}, got a boolean", name)
    if not isinstance(value, kinds):
        raise bad(f"'{name}' must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}", name)
    return value


def text(value, name: str) -> str:
    return utf8(_typed(value, name, (str,)), name)


def boolean(value, name: str) -> bool:
    return _typed(value, name, (bool,))


def number(lo=None, hi=None, integer: bool = False) -> Parser:
    """A number (an integer) within [lo, hi], either open where None."""
    def parse(value, name: str):
        _typed(value, name, (int,) if integer else (int, float))
        if not integer and not math.isfinite(value):
            raise bad(f"'{name}' must be a finite number", name)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise bad(f"'{name}' must be {bounds}, got {value}", name)
        return value
    return parse


def sampled(key: str) -> Parser:
    """A sampling number within SamplingParams' own bounds (sampling.BOUNDS)."""
    lo, hi, integer = BOUNDS[key]
    return number(lo, hi, integer)


SAMPLED = {key: sampled(key) for key in BOUNDS}
positive = number(1, integer=True)


def stops(value, name: str) -> tuple[str, ...]:
    """A string or a list of strings."""
    stop = [value] if isinstance(value, str) else value
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad(f"'{name}' must be a string or a list of strings", name)
    if len(stop) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise bad(f"'{name}' takes at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters", name)
    return tuple(utf8(s, name) for s in stop)


def logit_bias(value, name: str) -> tuple:
    """OpenAI's {"token id": bias} map."""
    _typed(value, name, (dict,))
    if len(value) > MAX_LOGIT_BIAS:
        raise bad(f"'{name}' names {len(value)} tokens; at most {MAX_LOGIT_BIAS}", name)
    out = []
    for key, bias in value.items():
        if not (key.isascii() and key.isdigit()) or isinstance(bias, bool) or not isinstance(bias, (int, float)) \
                or not math.isfinite(bias):
            raise bad(f"'{name}' maps token ids to numbers; got {key!r}: {bias!r}", name)
        out.append((int(key), float(bias)))
    return tuple(out)


def duration(value, name: str) -> float:
    """Ollama's durations (keep_alive)."""
    try:
        return parse_duration(value, name)
    except BadDuration as e:
        raise ApiError(400, str(e), field=name) from None


def stream_options(value, name: str) -> bool:
    """{"include_usage": true|false}: whether a stream ends with a usage chunk."""
    if not isinstance(value, dict) or set(value) - {"include_usage"} \
            or not isinstance(value.get("include_usage", False), bool):
        raise bad(f"'{name}' takes {{\"include_usage\": true|false}} only", name)
    return value.get("include_usage", False)


def refuse(why: str, allowed=(None,)) -> Parser:
    """A field this server cannot honour: an error naming it and `why`,
    unless its value is one of `allowed` (values that change nothing)."""
    def parse(value, name: str):
        if value not in allowed:
            raise bad(f"'{name}' {why}", name)
    return parse
