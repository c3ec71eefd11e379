"""The context of a loaded model as the generation paths share it: the inline
path (the Python API and the CLI) and the server's engine both prefill,
decode, sample and reuse cached prompts through this one class.

It owns llama.cpp's context and batch, records what each sequence's KV cache
holds (kvcache.py), and hands out exclusive use through `session()`.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import numpy as np

from ..errors import GenerationError
from ..native.context_handle import ContextHandle, ContextSpec
from ..native.model_handle import ModelHandle
from ..native.tap import Tap
from .kvcache import KVTokens


class Context:
    """n_seq_max sequences sharing one KV cache; each may hold `n_ctx` tokens."""

    def __init__(self, model: ModelHandle, spec: ContextSpec, tap: Tap | None = None):
        self.native = ContextHandle(model, spec, tap)
        # what llama.cpp allocated, not what was asked: it clamps n_batch to the
        # requested context and pads the context to a multiple of 256
        self.n_batch, self.n_seq_max = self.native.n_batch, spec.n_seq_max
        try:
            self._batch = self.native.new_batch(self.n_batch)
        except BaseException:
            self.native.close()
            raise
        self.n_vocab = model.n_vocab
        # the context one sequence can use: an equal share of the KV cache
        self.n_ctx = self.native.n_ctx // spec.n_seq_max
        self.kv = KVTokens(spec.n_seq_max)   # what each sequence's cache holds, for prompt reuse
        self._unified = spec.kv_unified
        self._lock = threading.Lock()
        self._owner: int | None = None
        # told of every decode and every cache change (speculative draft-mtp's head follows the cache: mtp.py)
        self.observer = None

    def set_threads(self, n: int) -> None:
        self.native.set_threads(n)

    def close(self) -> None:
        """Frees the batch, then the context. Safe to call twice."""
        self._batch.close()
        self.native.close()

    @contextlib.contextmanager
    def session(self) -> Iterator["Context"]:
        """Exclusive use of the context for one generation (or the engine's life)."""
        self.native.ptr()  # raises once closed
        if self._owner == threading.get_ident():
            raise GenerationError("this thread is already generating with this model: "
                                  "finish or close the other stream first")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield self
            finally:
                self._owner = None

    # --- decoding (inside a session) ----------------------------------------------
    def prefill(self, tokens: Sequence[int], start: int = 0, logits_all: bool = False) -> None:
        """Decodes `tokens` from position `start` of sequence 0 in chunks of n_batch."""
        for first in range(0, len(tokens), self.n_batch):
            chunk = tokens[first:first + self.n_batch]
            last = first + len(chunk) == len(tokens)
            want = [logits_all or (last and i == len(chunk) - 1) for i in range(len(chunk))]
            pos = start + first
            self.decode(chunk, range(pos, pos + len(chunk)), [0] * len(chunk), want)

    def decode(self, tokens, positions, seqs, want_logits) -> None:
        """One llama_decode of tokens from one or more sequences; records what
        each sequence's cache now holds."""
        self._batch.set(tokens, positions, seqs, want_logits)
        try:
            self.native.decode(self._batch)
        except BaseException:
            self.kv.forget()   # a failed decode leaves the cache's contents unknown
            raise
        if self.n_seq_max == 1:
            self.kv.extend(0, tokens)
        else:
            for tok, seq in zip(tokens, seqs):
                self.kv.extend(seq, (tok,))
        if self.observer is not None:
            self.observer.decoded(tokens, positions, seqs)

    def step(self, token: int, pos: int) -> None:
        """Feeds one sampled token back (sequence 0) and computes its logits."""
        self.decode((token,), (pos,), (0,), (True,))

    def logits(self, i: int) -> np.ndarray:
        return self.native.logits(i)

    def argmax(self, i: int) -> int:
        return self.native.argmax(i)

    # --- the KV cache ---------------------------------------------------------------
    def clear(self) -> None:
        """Empties the KV cache and its record."""
        self.native.clear()
        self.kv.forget()
        if self.observer is not None:
            self.observer.cleared()

    def _dropped(self, seq: int, n: int) -> None:
        """`seq` now holds n tokens: the observer follows."""
        if self.observer is not None:
            self.observer.truncated(seq, n)

    def empty(self, seq: int) -> None:
        """Forgets everything `seq`'s cache holds."""
        self.native.seq_rm(seq)
        self.kv.forget(seq)
        self._dropped(seq, 0)

    def truncate(self, seq: int, n: int) -> None:
        """Drops what `seq` holds from position n on (drafts the target did
        not keep). Attention caches only: a recurrent state cannot go back."""
        if not self.native.seq_rm(seq, n, -1):
            self.empty(seq)
            raise GenerationError(f"llama.cpp could not remove positions {n}.. of sequence {seq} "
                                  "(a recurrent state cannot be rolled back)")
        self.kv.truncate(seq, n)
        self._dropped(seq, n)

    def reuse(self, seq: int, prompt: Sequence[int]) -> int:
        """Keeps what `seq`'s cache shares with `prompt`; returns how many tokens."""
        kept = self.kv.reuse(self.native, seq, prompt)
        self._dropped(seq, kept)
        return kept

    def pick(self, free: Sequence[int], prompt: Sequence[int]) -> int:
        """The free sequence whose cache shares the longest prefix with `prompt`."""
        return self.kv.pick(free, prompt)

    @property
    def unified(self) -> bool:
        """One KV cache for all sequences (sharing a prefix is then a tag, not a copy)."""
        return self._unified

    def share(self, src: int, dst: int, n: int) -> None:
        """`dst` starts as `src`'s first n cached tokens (a prompt prefix two
        sequences share is decoded once): `dst` emptied, then given them."""
        self.native.seq_rm(dst)
        self.native.seq_cp(src, dst, 0, n)
        self.kv.forget(dst)
        self.kv.extend(dst, self.kv.tokens(src)[:n])
        self._dropped(dst, 0)     # an observer's own cache has no copy: it starts the sequence afresh

    def save(self, seq: int) -> tuple[list[int], bytes]:
        """What `seq`'s cache holds: its tokens and a copy of its KV state."""
        return self.kv.tokens(seq), self.native.seq_state(seq)

    def restore(self, seq: int, tokens: Sequence[int], state: bytes) -> bool:
        """Puts a saved sequence back into `seq` (emptied first); False if refused."""
        self.native.seq_rm(seq)
        self.kv.forget(seq)
        self._dropped(seq, 0)
        if not self.native.set_seq_state(seq, state):
            self.native.seq_rm(seq)
            return False
        self.kv.extend(seq, tokens)
        return True
