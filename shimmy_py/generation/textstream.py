"""Turns sampled tokens into text pieces safely: whole UTF-8 characters only,
and nothing emitted that a stop string might still claim.
"""
from __future__ import annotations

import codecs
from typing import Sequence


class PieceDecoder:
    """Decodes token bytes incrementally; a character split across tokens is
    held back until its last byte arrives (invalid bytes become U+FFFD)."""

    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, raw: bytes) -> str:
        return self._dec.decode(raw)

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class StopMatcher:
    """Finds stop strings in generated text. `push` returns the text that is safe
    to emit now and whether a stop string was hit (text after it is dropped);
    `matched`: the stop string hit."""

    def __init__(self, stops: Sequence[str] = ()):
        self.stops = [s for s in stops if s]
        self._held = ""
        self.matched = ""

    def push(self, text: str) -> tuple[str, bool]:
        buf = self._held + text
        if not self.stops:
            self._held = ""
            return buf, False
        hits = [(i, s) for i, s in ((buf.find(s), s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            at, self.matched = min(hits)
            return buf[:at], True
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest end of `buf` that begins some stop string."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:k]):
                    best = k
                    break
        return best
