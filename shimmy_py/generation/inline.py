"""A Model's own token source: generation in the caller's thread, with no
engine between (the Python API and the CLI; the server uses engine.py).
It reuses what the KV cache of sequence 0 holds from the previous generation
(kvcache.py), prefills the rest, then decodes one token per call."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .sampling import SamplingParams, build_chain

if TYPE_CHECKING:
    from .model import Model


class InlineSequence:
    """A Model's own token source: decodes in the caller's thread, holding the
    model's context from the first token until closed."""

    def __init__(self, model: Model, tokens: list[int], sampling: SamplingParams):
        self.model, self.tokens, self.sampling = model, tokens, sampling
        self.prompt_tokens, self.cached_tokens = len(tokens), 0
        self.t_start = time.perf_counter()
        self._session = self._ctx = self._chain = None
        self._last = self._n_past = None

    def next_token(self) -> int | None:
        m = self.model
        if self._ctx is None:
            self.t_start = time.perf_counter()
            self._session = m.session()
            self._ctx = self._session.__enter__()
            self._chain = build_chain(self.sampling, m.n_vocab, self.tokens)
            # what the cache holds from the previous generation and this prompt share is kept
            self.cached_tokens = m.kv.reuse(self._ctx, 0, self.tokens)
            m.prefill(self._ctx, self.tokens[self.cached_tokens:], start=self.cached_tokens)
            self._n_past = len(self.tokens)
        else:
            if self._n_past >= m.n_ctx:
                return None
            m.step(self._ctx, self._last, self._n_past)
            self._n_past += 1
        self._last = self._chain.sample(self._ctx, -1)
        return self._last

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()
        if self._session is not None:
            session, self._session = self._session, None
            session.__exit__(None, None, None)
