"""Conversations kept in host RAM: when a sequence's slot goes to another
request, its KV cache is copied out (llama.cpp's per-sequence state), and
restored when a prompt that starts the same way returns, as llama-server's
--cache-ram does. Bounded in bytes; the least recently used entry goes first.

Pure bookkeeping: the copies are made and loaded by the Context.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from .kvcache import common_prefix


@dataclass
class Saved:
    tokens: tuple[int, ...]      # what the sequence held, position by position
    state: bytes                 # llama_state_seq_get_data's copy of its KV cache


class HostCache:
    """Saved sequences within `limit_bytes` (0: off)."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self._entries: "OrderedDict[tuple[int, ...], Saved]" = OrderedDict()
        self.bytes = 0
        self.hits = self.saves = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: Sequence[int], state: bytes) -> bool:
        """Keeps a copy; older ones go when the limit needs room. False if it cannot fit at all."""
        key = tuple(tokens)
        if not self.limit or len(state) > self.limit or not key:
            return False
        self.remove(key)
        while self._entries and self.bytes + len(state) > self.limit:
            _, old = self._entries.popitem(last=False)
            self.bytes -= len(old.state)
        self._entries[key] = Saved(key, state)
        self.bytes += len(state)
        self.saves += 1
        return True

    def set_limit(self, limit_bytes: int) -> None:
        """A new bound (the server gave host RAM to a model); older entries go until it holds."""
        self.limit = max(0, limit_bytes)
        while self._entries and self.bytes > self.limit:
            _, old = self._entries.popitem(last=False)
            self.bytes -= len(old.state)

    def best(self, prompt: Sequence[int]) -> tuple[Saved | None, int]:
        """The entry sharing the longest prefix with `prompt`, and that length."""
        found, shared = None, 0
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, prompt)
            if n > shared:
                found, shared = entry, n
        return found, shared

    def take(self, entry: Saved) -> Saved:
        """Removes `entry` (it goes back into a sequence) and counts a hit."""
        self.remove(entry.tokens)
        self.hits += 1
        return entry

    def remove(self, key: tuple[int, ...]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old.state)
