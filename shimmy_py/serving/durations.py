"""Durations as Ollama writes them ("5m", "1h30m", "10s", seconds; negative:
forever), for keep_alive in requests, --keep-alive and --config."""
from __future__ import annotations

import math
import re

from ..errors import ShimmyError


class BadDuration(ShimmyError, ValueError):
    """A keep_alive that is not a duration."""


def parse_duration(value, what: str = "keep_alive") -> float:
    """Ollama's durations: seconds as a number, or "300", "5m", "1h30m", "10s";
    negative keeps forever (math.inf), 0 means at once."""
    if isinstance(value, bool):
        raise BadDuration(f"'{what}' must be a duration such as \"5m\" or seconds, got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"(-)?((\d+(\.\d+)?)(h|m|s|ms))+", value.strip()):
        sign = -1 if value.strip().startswith("-") else 1
        units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
        seconds = sign * sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s)", value))
    else:
        raise BadDuration(f"'{what}' must be a duration such as \"5m\", \"1h\" or seconds, got {value!r}")
    if math.isnan(seconds) or (not math.isfinite(seconds) and seconds > 0):
        raise BadDuration(f"'{what}' must be finite or negative (forever), got {value!r}")
    return math.inf if seconds < 0 else seconds
