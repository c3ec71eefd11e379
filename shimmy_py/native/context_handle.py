"""struct llama_context * and struct llama_batch: decoding, logits, and the
KV cache (memory) calls, with Python values in and out."""
from __future__ import annotations

import ctypes
from ctypes import POINTER, c_float
from dataclasses import dataclass

import numpy as np

from ..errors import NativeError
from .binding import llama_embd, llama_pos
from .model_handle import ModelHandle
from .owned import Owned
from .runtime import lib
from .tap import Tap

# enum ggml_type, for the KV cache types llama.cpp accepts (its -ctk/-ctv)
KV_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7}
# enum llama_flash_attn_type (llama.cpp's -fa)
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}
CONTEXT_TYPE_MTP = 1      # enum llama_context_type
PROCESS_DECODE = 1        # enum llama_process_type
# logits rows a context keeps a view of (ContextHandle._logits_view)
_MAX_VIEWS = 256
# enum llama_pooling_type (llama.cpp's --pooling); "": the model's own
POOLING = {"": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


@dataclass(frozen=True)
class ContextSpec:
    """llama_context_params in Python values; the rest stays llama.cpp's default."""
    n_ctx: int
    n_batch: int
    n_seq_max: int
    n_threads: int
    kv_unified: bool
    kv_type: str = "f16"       # K and V cache type (shimmy_py.defaults.KV_TYPE)
    flash_attn: str = "auto"   # (shimmy_py.defaults.FLASH_ATTN)
    embeddings: bool = False   # outputs pooled embeddings (a whole input in one ubatch)
    pooling: str = ""          # POOLING's names; "": the model's own
    nextn: str = ""            # MTP: "target" outputs every token's hidden state for the MTP head,
    #                            "mtp" is the MTP head's own context (LLAMA_CONTEXT_TYPE_MTP); "": neither


class ContextHandle(Owned):
    """struct llama_context *, a child of a ModelHandle."""

    def __init__(self, model: ModelHandle, spec: ContextSpec, tap: Tap | None = None):
        self.model = model  # keeps the parent alive while this context lives
        self.tap = tap      # the graph callback, when asked for (else none: no cost)
        L = lib()
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_seq_max = spec.n_ctx, spec.n_batch, spec.n_seq_max
        cp.n_ubatch = min(cp.n_ubatch, spec.n_batch)
        cp.n_threads = cp.n_threads_batch = spec.n_threads
        cp.kv_unified = spec.kv_unified
        if spec.kv_type not in KV_TYPES:
            raise NativeError(f"KV cache type {spec.kv_type!r}: choose one of {', '.join(KV_TYPES)}")
        cp.type_k = cp.type_v = KV_TYPES[spec.kv_type]
        if spec.flash_attn not in FLASH_ATTN:
            raise NativeError(f"flash attention {spec.flash_attn!r}: choose one of {', '.join(FLASH_ATTN)}")
        cp.flash_attn_type = FLASH_ATTN[spec.flash_attn]
        cp.no_perf = True
        if spec.embeddings:
            if spec.pooling not in POOLING:
                raise NativeError(f"pooling {spec.pooling!r}: choose one of {', '.join(p for p in POOLING if p)}")
            cp.embeddings, cp.pooling_type, cp.n_ubatch = True, POOLING[spec.pooling], spec.n_batch
        if tap is not None:
            cp.cb_eval, cp.cb_eval_user_data = tap.address, tap.user_data
        if spec.nextn == "mtp":
            cp.ctx_type = CONTEXT_TYPE_MTP
        with model.using() as model_ptr:
            ptr = L.llama_init_from_model(model_ptr, cp)
        super().__init__(ptr, f"llama_init_from_model({model.path})")
        self._memory = L.llama_get_memory(ptr)
        self._views: dict[int, np.ndarray] = {}   # logits rows by address (_logits_view)
        if spec.nextn:   # the target: a row per batch token; the head: a row per output (llama.cpp's "masked")
            L.llama_set_embeddings_nextn(ptr, True, spec.nextn == "mtp")

    def new_batch(self, capacity: int) -> "Batch":
        """A batch for this context, sharing its lock (filled and decoded together)."""
        return Batch(capacity, lock=self._lock)

    def _free(self, ptr) -> None:
        self._views.clear()
        lib().llama_free(ptr)

    @property
    def n_ctx(self) -> int:
        """The context llama.cpp allocated (it pads the request to a multiple of 256)."""
        with self.using() as ptr:
            return lib().llama_n_ctx(ptr)

    @property
    def n_batch(self) -> int:
        """The most tokens one llama_decode takes: llama.cpp clamps the request to
        the requested context (before padding), and asserts on anything larger."""
        with self.using() as ptr:
            return lib().llama_n_batch(ptr)

    @property
    def n_threads(self) -> int:
        with self.using() as ptr:
            return lib().llama_n_threads(ptr)

    def set_threads(self, n: int) -> None:
        """The CPU threads its next decodes run on (prompts and generation alike)."""
        with self.using() as ptr:
            lib().llama_set_n_threads(ptr, n, n)

    def decode(self, batch: "Batch") -> None:
        with self.using() as ptr, batch.using():
            rc = lib().llama_decode(ptr, batch.struct)
        if self.tap is not None:
            self.tap.take_error()
        if rc != 0:
            meaning = {1: "no KV cache slot for the batch (context full)", 2: "aborted",
                       -1: "invalid input batch"}.get(rc, "fatal error")
            raise NativeError(f"llama_decode({self.model.path}) returned {rc}: {meaning}")

    def logits(self, i: int) -> np.ndarray:
        """A copy of the logits of output `i` of the last decoded batch."""
        with self._lock:
            return self._logits_view(i).copy()

    def logits_into(self, i: int, out: np.ndarray) -> None:
        """Output `i`'s logits copied into `out` (a float32 array or field of n_vocab)."""
        with self._lock:
            out[...] = self._logits_view(i)

    def argmax(self, i: int) -> int:
        """The token with the largest logit at output `i`, read in place (the
        first one on a tie, as llama.cpp's greedy sampler chooses)."""
        with self._lock:
            return int(self._logits_view(i).argmax())

    def nextn_row(self, i: int) -> np.ndarray:
        """A copy of row `i` of the hidden states for the MTP head (the target:
        batch token i; the head's own context: output i)."""
        with self.using() as ptr:
            return self._floats(lib().llama_get_embeddings_nextn_ith(ptr, i), (self.model.n_embd_out,),
                                f"MTP hidden state at row {i}")

    def nextn_rows(self, n: int) -> np.ndarray:
        """A copy of the first n rows of the hidden states for the MTP head
        (the target's: one per token of the last batch)."""
        with self.using() as ptr:
            return self._floats(lib().llama_get_embeddings_nextn(ptr), (n, self.model.n_embd_out),
                                "MTP hidden states")

    def process(self, batch: "ExtBatch") -> None:
        """llama_process (decode) of an extended batch: tokens with a hidden state each (MTP)."""
        with self.using() as ptr, batch.using() as bptr:
            rc = lib().llama_process(ptr, PROCESS_DECODE, bptr)
        if rc != 0:
            raise NativeError(f"llama_process({self.model.path}) returned {rc}")

    def new_ext_batch(self) -> "ExtBatch":
        with self.using() as ptr:
            return ExtBatch(lib().llama_batch_ext_init(ptr), lock=self._lock)

    def pooling(self) -> str:
        """The pooling this context applies (its spec's, or the model's)."""
        with self.using() as ptr:
            kind = lib().llama_pooling_type(ptr)
        return next((name for name, v in POOLING.items() if v == kind and name), str(kind))

    def embedding(self, seq: int) -> np.ndarray:
        """A copy of sequence `seq`'s pooled embedding from the last decode."""
        with self.using() as ptr:
            return self._floats(lib().llama_get_embeddings_seq(ptr, seq), (self.model.n_embd_out,),
                                f"pooled embedding for sequence {seq} (pooling {self.pooling()})")

    def _floats(self, ptr, shape: tuple, what: str) -> np.ndarray:
        """A copy of the float array llama.cpp returned (NULL: an error naming `what`)."""
        if not ptr:
            raise NativeError(f"no {what} ({self.model.path})")
        return np.ctypeslib.as_array(ptr, shape=shape).copy()

    def _logits_view(self, i: int) -> np.ndarray:
        """llama.cpp's logits of output `i`, valid until the next decode or the
        context's close: no copy, so only read under the lock.

        A view is made once per address llama.cpp hands out and kept: a
        decoded token reads its row at the same address as the last one, and
        making an array over a pointer costs more than the greedy argmax over
        it (tens of microseconds, just after a decode has evicted Python's
        caches). Reuse is safe because llama.cpp is asked every time: an
        address it returns now holds output `i`'s n_vocab logits."""
        addr = lib().llama_get_logits_ith(self.ptr(), i)
        if not addr:
            raise NativeError(f"llama_get_logits_ith({i}) returned NULL ({self.model.path})")
        view = self._views.get(addr)
        if view is None:
            if len(self._views) >= _MAX_VIEWS:   # rows of many batch sizes seen: start over
                self._views.clear()
            view = self._views[addr] = np.ctypeslib.as_array((c_float * self.model.n_vocab).from_address(addr))
        return view

    def clear(self) -> None:
        """Forgets every cached token. Metadata only, as llama-bench clears it:
        zeroing the buffers (data=true) would cost a memset of the whole KV
        cache, hundreds of MB for a large model, on every request."""
        with self.using():
            lib().llama_memory_clear(self._memory, False)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        """Removes positions [p0, p1) of `seq` from the KV cache (-1: open end)."""
        with self.using():
            return lib().llama_memory_seq_rm(self._memory, seq, p0, p1)


    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Sequence `dst` also holds `src`'s cells in [p0, p1) (with one KV
        cache for all sequences, a tag on the cells: no copy)."""
        with self.using():
            lib().llama_memory_seq_cp(self._memory, src, dst, p0, p1)

    def seq_state(self, seq: int) -> bytes:
        """A copy of sequence `seq`'s KV cache (llama_state_seq_get_data)."""
        with self.using() as ptr:
            size = lib().llama_state_seq_get_size(ptr, seq)
            buf = ctypes.create_string_buffer(max(1, size))
            n = lib().llama_state_seq_get_data(ptr, buf, size, seq)
        if n != size:
            raise NativeError(f"llama_state_seq_get_data({seq}) wrote {n} of {size} bytes ({self.model.path})")
        return buf.raw[:n]

    def set_seq_state(self, seq: int, data: bytes) -> bool:
        """Loads a copy made by seq_state into sequence `seq`; False if llama.cpp refused."""
        with self.using() as ptr:
            return lib().llama_state_seq_set_data(ptr, data, len(data), seq) > 0


class Batch(Owned):
    """struct llama_batch from llama_batch_init, reused across decode steps."""

    def __init__(self, capacity: int, n_seq_max: int = 1, lock=None):
        self.capacity = capacity
        self.struct = lib().llama_batch_init(capacity, 0, n_seq_max)
        super().__init__(ctypes.cast(self.struct.token, ctypes.c_void_p).value, "llama_batch_init", lock)

    def set(self, tokens, positions, seqs, want_logits) -> None:
        """Fills the batch: token i at positions[i] of sequence seqs[i]."""
        n = len(tokens)
        if n > self.capacity:
            raise NativeError(f"batch of {n} tokens exceeds its capacity {self.capacity}")
        with self.using():
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


class ExtBatch(Owned):
    """struct llama_batch_ext *: entries of a token, its position and a hidden
    state (the MTP head's input), for llama_process."""

    def __init__(self, ptr, lock=None):
        super().__init__(ptr, "llama_batch_ext_init", lock)
        self._rows: list = []   # the hidden states llama.cpp points into until the next fill

    def fill(self, tokens, positions, seqs, states, outputs) -> None:
        """Entry i: tokens[i] at positions[i] of seqs[i], with the float32 row
        states[i]; outputs[i]: its logits (and hidden state) are wanted."""
        L = lib()
        with self.using() as ptr:
            L.llama_batch_ext_clear(ptr)
            self._rows = [np.ascontiguousarray(s, dtype=np.float32) for s in states]
            for i, (tok, pos, seq, row, out) in enumerate(zip(tokens, positions, seqs, self._rows, outputs)):
                idx = L.llama_batch_ext_add_token(ptr, seq, tok)
                if idx != i:
                    raise NativeError(f"llama_batch_ext_add_token returned {idx} for entry {i}")
                p = llama_pos(pos)
                embd = llama_embd(row.ctypes.data_as(POINTER(c_float)), 1, row.size)
                if not (L.llama_batch_ext_set_pos(ptr, i, ctypes.byref(p)) and
                        L.llama_batch_ext_set_embd_token(ptr, i, embd) and
                        (not out or L.llama_batch_ext_set_output_logits(ptr, i, True))):
                    raise NativeError(f"llama_batch_ext refused entry {i} (token {tok}, position {pos})")

    def _free(self, ptr) -> None:
        lib().llama_batch_ext_free(ptr)
