"""Embeddings of text: a second llama context on the model's weights, made
on first use, whose outputs are pooled per input (the file's pooling, or
mean pooling where the file says none, as `llama-server --embeddings
--pooling mean`), one input per decode, and L2-normalized as llama-server's
/v1/embeddings normalizes them. Its KV cache holds one input at a time:
`n_ctx` tokens at most, allocated beside the generation context's."""
from __future__ import annotations

import threading

import numpy as np

from ..errors import GenerationError
from ..native.context_handle import ContextHandle, ContextSpec
from ..native.model_handle import ModelHandle


class Embedder:
    """One pooled-embedding context; close() frees it (safe twice)."""

    def __init__(self, model: ModelHandle, n_ctx: int, n_threads: int):
        spec = ContextSpec(n_ctx, n_ctx, 1, n_threads, True, embeddings=True)
        self.context = ContextHandle(model, spec)
        if self.context.pooling() == "none":          # a generative model: no pooling of its own
            self.context.close()
            self.context = ContextHandle(model, ContextSpec(n_ctx, n_ctx, 1, n_threads, True, embeddings=True,
                                                            pooling="mean"))
        self.n_batch = self.context.n_batch
        self._batch = self.context.new_batch(self.n_batch)
        self._lock = threading.Lock()

    @property
    def pooling(self) -> str:
        return self.context.pooling()

    def embed(self, tokens: list[int], normalize: bool = True) -> np.ndarray:
        if not tokens:
            raise GenerationError("an empty input has no embedding")
        if len(tokens) > self.n_batch:
            raise GenerationError(f"an input of {len(tokens)} tokens is longer than the embedding context "
                                  f"({self.n_batch} tokens)")
        with self._lock:
            self.context.clear()
            n = len(tokens)
            self._batch.set(tokens, range(n), [0] * n, [True] * n)
            self.context.decode(self._batch)
            v = self.context.embedding(0)
        if normalize:
            norm = float(np.sqrt(np.sum(v.astype(np.float64) ** 2)))
            v = (v / norm if norm > 0 else v).astype(np.float32)
        return v

    def close(self) -> None:
        self._batch.close()
        self.context.close()
