"""One owning class per native pointer: model, context, sampler chain, batch.

Each frees its pointer exactly once: `close()` is safe to call twice, they are
context managers, a child keeps its parent alive, and at interpreter exit
everything still open is freed newest first (children before parents). A NULL
or a failing return code becomes a NativeError naming the function and file.
"""
from __future__ import annotations

import ctypes
import itertools
import threading
import weakref

import numpy as np

from . import binding as _llama
from .runtime import lib
from ..errors import NativeError

_live: "weakref.WeakValueDictionary[int, Owned]" = weakref.WeakValueDictionary()
_order = itertools.count()
_live_lock = threading.Lock()


def close_all() -> None:
    with _live_lock:
        objs = [_live[k] for k in sorted(_live, reverse=True) if k in _live]
    for obj in objs:
        obj.close()


class Owned:
    """Base: holds `_ptr` and frees it with `_free` once."""

    def __init__(self, ptr, what: str):
        if not ptr:
            raise NativeError(f"{what} returned NULL")
        self._ptr = ptr
        with _live_lock:
            _live[next(_order)] = self

    def _free(self, ptr) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def ptr(self):
        if self._ptr is None:
            raise NativeError(f"{type(self).__name__} is closed")
        return self._ptr

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._free(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class ModelHandle(Owned):
    """struct llama_model *, loaded from `path` with `params`."""

    def __init__(self, path: str, params: _llama.llama_model_params, keepalive=()):
        self.path = path
        self._keepalive = keepalive  # pattern strings and arrays llama.cpp points into
        ptr = lib().llama_model_load_from_file(path.encode(), params)
        super().__init__(ptr, f"llama_model_load_from_file({path})")
        self._vocab = lib().llama_model_get_vocab(ptr)

    @property
    def vocab(self):
        """The model's vocabulary; raises once the model is closed."""
        self.ptr()
        return self._vocab

    def _free(self, ptr) -> None:
        lib().llama_model_free(ptr)


class ContextHandle(Owned):
    """struct llama_context *, a child of a ModelHandle."""

    def __init__(self, model: ModelHandle, params: _llama.llama_context_params):
        self.model = model  # keeps the parent alive while this context lives
        ptr = lib().llama_init_from_model(model.ptr(), params)
        super().__init__(ptr, f"llama_init_from_model({model.path})")
        self.memory = lib().llama_get_memory(ptr)

    def _free(self, ptr) -> None:
        lib().llama_free(ptr)

    def decode(self, batch: "Batch") -> None:
        rc = lib().llama_decode(self.ptr(), batch.struct)
        if rc != 0:
            meaning = {1: "no KV cache slot for the batch (context full)", 2: "aborted",
                       -1: "invalid input batch"}.get(rc, "fatal error")
            raise NativeError(f"llama_decode({self.model.path}) returned {rc}: {meaning}")

    def logits(self, i: int, n_vocab: int) -> np.ndarray:
        """A copy of the logits of output `i` of the last decoded batch."""
        return self._logits_view(i, n_vocab).copy()

    def argmax(self, i: int, n_vocab: int) -> int:
        """The token with the largest logit at output `i`, read in place (the
        first one on a tie, as llama.cpp's greedy sampler chooses)."""
        return int(self._logits_view(i, n_vocab).argmax())

    def _logits_view(self, i: int, n_vocab: int) -> np.ndarray:
        """llama.cpp's logits of output `i`, valid until the next decode: no copy."""
        ptr = lib().llama_get_logits_ith(self.ptr(), i)
        if not ptr:
            raise NativeError(f"llama_get_logits_ith({i}) returned NULL ({self.model.path})")
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    def clear(self) -> None:
        """Forgets every cached token. Metadata only, as llama-bench clears it:
        zeroing the buffers (data=true) would cost a memset of the whole KV
        cache, hundreds of MB for a large model, on every request."""
        lib().llama_memory_clear(self.memory, False)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return lib().llama_memory_seq_rm(self.memory, seq, p0, p1)


class SamplerChain(Owned):
    """struct llama_sampler * of a chain; owns the samplers added to it."""

    def __init__(self):
        L = lib()
        params = L.llama_sampler_chain_default_params()
        params.no_perf = True
        super().__init__(L.llama_sampler_chain_init(params), "llama_sampler_chain_init")

    def add(self, sampler_ptr, what: str) -> None:
        if not sampler_ptr:
            raise NativeError(f"{what} returned NULL")
        lib().llama_sampler_chain_add(self.ptr(), sampler_ptr)

    def accept(self, token: int) -> None:
        lib().llama_sampler_accept(self.ptr(), token)

    def sample(self, ctx: ContextHandle, idx: int) -> int:
        return lib().llama_sampler_sample(self.ptr(), ctx.ptr(), idx)

    def _free(self, ptr) -> None:
        lib().llama_sampler_free(ptr)


class Batch(Owned):
    """struct llama_batch from llama_batch_init, reused across decode steps."""

    def __init__(self, capacity: int, n_seq_max: int = 1):
        self.capacity = capacity
        self.struct = lib().llama_batch_init(capacity, 0, n_seq_max)
        super().__init__(ctypes.cast(self.struct.token, ctypes.c_void_p).value, "llama_batch_init")

    def set(self, tokens, positions, seqs, want_logits) -> None:
        """Fills the batch: token i at positions[i] of sequence seqs[i]."""
        self.ptr()
        n = len(tokens)
        if n > self.capacity:
            raise NativeError(f"batch of {n} tokens exceeds its capacity {self.capacity}")
        s = self.struct
        for i in range(n):
            s.token[i] = tokens[i]
            s.pos[i] = positions[i]
            s.n_seq_id[i] = 1
            s.seq_id[i][0] = seqs[i]
            s.logits[i] = want_logits[i]
        s.n_tokens = n

    def _free(self, ptr) -> None:
        lib().llama_batch_free(self.struct)
