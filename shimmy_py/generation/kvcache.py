"""Prompt reuse: which tokens each sequence of a context holds in its KV cache,
so that a prompt starting the same way as an earlier one (a chat's history,
a shared system prompt) decodes only the part that differs.

This is llama-server's `cache_prompt` (on by default there): keep the common
prefix, drop the rest of the sequence's cache, and always decode at least the
last prompt token, since its logits are the ones sampled. The KV entries of
the kept prefix were computed by earlier llama_decode calls of the same
context, so the result is the same computation, not an approximation.
"""
from __future__ import annotations

from typing import Sequence


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class KVTokens:
    """The tokens in each sequence's KV cache, in position order (position i
    holds tokens[i]). The owner of the context records every token it decodes
    (`extend`) and calls `reuse` before a new prompt."""

    def __init__(self, n_seq: int):
        self._tokens: list[list[int]] = [[] for _ in range(n_seq)]

    def pick(self, free: Sequence[int], prompt: Sequence[int]) -> int:
        """Of the `free` sequences, the one whose cache shares the longest prefix
        with `prompt`; among equals, the lowest id."""
        return max(free, key=lambda s: (common_prefix(self._tokens[s], prompt), -s))

    def reuse(self, ctx, seq: int, prompt: Sequence[int]) -> int:
        """Trims `seq`'s cache to its common prefix with `prompt` (at most all
        but the last prompt token) and returns how many tokens were kept."""
        kept = min(common_prefix(self._tokens[seq], prompt), len(prompt) - 1)
        if not ctx.seq_rm(seq, kept, -1):   # refused: start the sequence afresh
            ctx.seq_rm(seq)
            kept = 0
        del self._tokens[seq][kept:]
        return kept

    def extend(self, seq: int, tokens: Sequence[int]) -> None:
        """Records tokens just decoded at the end of `seq`."""
        self._tokens[seq].extend(tokens)

    def truncate(self, seq: int, n: int) -> None:
        """Records that `seq` now holds only its first n tokens."""
        del self._tokens[seq][n:]

    def forget(self, seq: int | None = None) -> None:
        """After a clear (or a failed decode): nothing is known to be cached."""
        for s in (range(len(self._tokens)) if seq is None else (seq,)):
            self._tokens[s].clear()

    def cached(self, seq: int) -> int:
        return len(self._tokens[seq])

    def tokens(self, seq: int) -> list[int]:
        """A copy of what `seq`'s cache holds."""
        return list(self._tokens[seq])
