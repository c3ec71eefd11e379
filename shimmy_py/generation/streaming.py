"""Routed experts that stream from the file (the plan's third tier,
placement/tiers.py): read into the page cache as soon as a layer's router
has chosen them, ahead of the matmul that reads them through llama.cpp's
mapping, in one request per expert slice, all of a layer's at once.

`ExpertStreamer` is a standing listener of the context's graph tap
(native/tap.py) on `ffn_moe_weights-<layer>`, whose operand is the chosen
expert ids. For each chosen expert not resident it has its gate, up and
down slices read (each expert is contiguous in its 3-D tensor): by a pool
of threads that `pread` them (the default), or by the kernel, asked with
`posix_fadvise(WILLNEED)` (docs/STREAMING.md measures both). At attach it
pins the resident tensors (mlock, bounded by the plan) so that streaming
never evicts what every token reads, and marks the streamed tensors
MADV_RANDOM so that a fault there reads no neighbours. The bytes llama.cpp
computes with are the file's either way: streaming changes when they are
read, never what is computed.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import GenerationError, NativeError
from ..gguf_io.reader import read_header
from ..native import pagecache
from ..placement.options import STREAM_METHODS
from .experts import TOPK, WEIGHTS

logger = logging.getLogger("shimmy_py")
READ_CHUNK = 1 << 22        # a reader's buffer: a slice larger than this is read in parts


@dataclass
class StreamStats:
    """What streaming did since load: streamed expert slices routed to, those not in RAM then, bytes read."""
    routed: int = 0
    missed: int = 0
    bytes_read: int = 0
    tokens: int = 0
    pinned_bytes: int = 0

    @property
    def miss_rate(self) -> float:
        return self.missed / self.routed if self.routed else 0.0

    def as_dict(self) -> dict:
        return {"routed_slices": self.routed, "missed_slices": self.missed, "miss_rate": round(self.miss_rate, 4),
                "file_bytes": self.bytes_read, "tokens": self.tokens, "pinned_bytes": self.pinned_bytes,
                "file_bytes_per_token": round(self.bytes_read / self.tokens) if self.tokens else 0}


class ExpertStreamer:
    """Prefetches the streamed experts a layer routes to; pins the resident set."""

    def __init__(self, path: str | os.PathLike, tiers, method: str = "pread", readers: int = 8):
        if method not in STREAM_METHODS:
            raise GenerationError(f"streaming method {method!r}: use one of {', '.join(STREAM_METHODS)}")
        self.path, self.method = str(path), method
        header = read_header(path)
        self.slices: dict[int, list[tuple[int, int]]] = {}     # layer: (offset, one expert's bytes) per tensor
        self.whole: list[tuple[int, int]] = []                 # resident tensors: (offset, bytes)
        self.n_expert = 0
        for t in header.tensors:
            if t.name in tiers.resident:
                self.whole.append((t.offset, t.nbytes))
            elif "_exps." in t.name and len(t.shape) == 3:
                layer = int(t.name.split(".")[1])
                self.n_expert = t.shape[2]
                self.slices.setdefault(layer, []).append((t.offset, t.nbytes // t.shape[2]))
        self.resident = {layer: frozenset(tiers.resident_experts(layer)) for layer in self.slices}
        self.stats = StreamStats()
        self.fd = os.open(self.path, os.O_RDONLY)
        self.base: int | None = None
        self._pinned: list[tuple[int, int]] = []
        self._pool = ThreadPoolExecutor(readers, thread_name_prefix="expert-read") if method == "pread" else None
        self._buffers = threading.local()
        self._first_layer = min(self.slices) if self.slices else None

    def attach(self) -> None:
        """After the model is loaded (mapped): pin the resident set, mark the streamed tensors random."""
        self.base = pagecache.mapping_base(self.path)
        if self.base is None:
            logger.warning("%s is not mapped: experts stream through the file only (no pinning)", self.path)
            return
        try:
            for layer, tensors in self.slices.items():
                for offset, size in tensors:
                    pagecache.advise(self.base + offset, size * self.n_expert, pagecache.MADV_RANDOM)
        except NativeError as e:
            logger.warning("the streamed experts keep the kernel's read-around (%s)", e)
        pin = list(self.whole) + [(offset + e * size, size) for layer, tensors in self.slices.items()
                                  for offset, size in tensors for e in self.resident[layer]]
        try:
            for offset, size in pin:
                pagecache.lock(self.base + offset, size)
                self._pinned.append((offset, size))
                self.stats.pinned_bytes += size
        except NativeError as e:
            logger.warning("the resident set is not pinned (%s): the page cache may evict it; raise the locked "
                           "memory limit (ulimit -l) to pin it", e)

    def __call__(self, name: str, _weights: np.ndarray, ids: np.ndarray | None) -> None:
        tensors, chosen = self.routed(name, ids)
        for e in chosen:
            for offset, size in tensors:
                self._fetch(offset + e * size, size)

    def routed(self, name: str, ids: np.ndarray | None) -> tuple[list, list[int]]:
        """At the routing node `name`: the layer's streamed tensors (offset,
        one expert's bytes) and the chosen experts that are not resident
        (counting the tokens at the first MoE layer); ([], []) elsewhere."""
        layer = int(name.rpartition("-")[2])
        tensors = self.slices.get(layer)
        if tensors is None or ids is None:
            return [], []
        if layer == self._first_layer:
            self.stats.tokens += int(ids.reshape(-1, ids.shape[-1]).shape[0])
        return tensors, sorted(set(int(e) for e in np.unique(ids)) - self.resident[layer])

    def _fetch(self, offset: int, size: int) -> None:
        """A hint: the kernels read the mapping whatever happens here, so a failed check counts as a miss."""
        self.stats.routed += 1
        try:
            if self.base is not None and pagecache.resident_share(self.base + offset, size) >= 1.0:
                return
        except NativeError:
            pass
        self.stats.missed += 1
        self.stats.bytes_read += size
        if self._pool is not None:
            self._pool.submit(self._pread, offset, size)
        else:
            os.posix_fadvise(self.fd, offset, size, os.POSIX_FADV_WILLNEED)

    def _pread(self, offset: int, size: int) -> None:
        buf = getattr(self._buffers, "buf", None)
        if buf is None:                       # one buffer per reader thread, made once, not per slice
            buf = self._buffers.buf = bytearray(READ_CHUNK)
        done = 0
        while done < size:
            n = os.preadv(self.fd, [memoryview(buf)[:min(len(buf), size - done)]], offset + done)
            if n <= 0:
                return
            done += n

    def close(self) -> None:
        if self.fd < 0:
            return
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.base is not None and pagecache.mapping_base(self.path) == self.base:
            for offset, size in self._pinned:
                pagecache.unlock(self.base + offset, size)
        self._pinned = []
        os.close(self.fd)
        self.fd = -1


def stream_experts(path, tiers, context, method: str = "pread") -> ExpertStreamer:
    """A streamer for the plan's tiers, pinned and listening on the context's tap."""
    streamer = ExpertStreamer(path, tiers, method)
    try:
        streamer.attach()
        context.native.tap.keep(streamer, {WEIGHTS: TOPK})
    except BaseException:
        streamer.close()
        raise
    return streamer
