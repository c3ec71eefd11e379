"""Routed experts that stream from the file (the plan's third tier,
placement/tiers.py): read into the page cache as soon as a layer's router
has chosen them, ahead of the matmul that reads them through llama.cpp's
mapping, in one request per expert slice, all of a layer's at once.

`ExpertStreamer` is a standing listener of the context's graph tap
(native/tap.py) on `ffn_moe_weights-<layer>`, whose operand is the chosen
expert ids. For each chosen expert not resident it has its gate, up and
down slices read (each expert is contiguous in its 3-D tensor): by the
kernel, asked with `posix_fadvise(WILLNEED)` (the default), by a pool of
threads that `pread` them, or into memory of its own instead of the page
cache (`OwnedExpertStreamer`, --stream-method own; docs/STREAMING.md
measures each). At attach it
pins the resident tensors (mlock, bounded by the plan) so that streaming
never evicts what every token reads, and marks the streamed tensors
MADV_RANDOM so that a fault there reads no neighbours. The bytes llama.cpp
computes with are the file's either way: streaming changes when they are
read, never what is computed.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import psutil

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

    def since(self, before: StreamStats) -> StreamStats:
        """What streaming did after `before` (a copy of these stats taken then)."""
        return StreamStats(self.routed - before.routed, self.missed - before.missed,
                           self.bytes_read - before.bytes_read, self.tokens - before.tokens, self.pinned_bytes)

    def __add__(self, other: StreamStats) -> StreamStats:
        return StreamStats(self.routed + other.routed, self.missed + other.missed,
                           self.bytes_read + other.bytes_read, self.tokens + other.tokens, self.pinned_bytes)

    def as_dict(self) -> dict:
        return {"routed_slices": self.routed, "missed_slices": self.missed, "miss_rate": round(self.miss_rate, 4),
                "file_bytes": self.bytes_read, "tokens": self.tokens, "pinned_bytes": self.pinned_bytes,
                "file_bytes_per_token": round(self.bytes_read / self.tokens) if self.tokens else 0}


class ExpertStreamer:
    """Prefetches the streamed experts a layer routes to; pins the resident set."""

    def __init__(self, path: str | os.PathLike, tiers, method: str = "fadvise", readers: int = 8):
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
        self._pool = ThreadPoolExecutor(readers, thread_name_prefix="expert-read") if method != "fadvise" else None
        self._buffers = threading.local()
        self._first_layer = min(self.slices) if self.slices else None

    def attach(self) -> None:
        """After the model is loaded (mapped): pin the resident set, mark the streamed tensors random."""
        self.base = pagecache.mapping_base(self.path)
        if self.base is None:
            logger.warning("%s is not mapped: experts stream through the file only (no pinning)", self.path)
            return
        try:       # pinned first: mlock reads with the kernel's readahead, which MADV_RANDOM would cut to a page
            for offset, size in self._to_pin():
                pagecache.lock(self.base + offset, size)
                self._pinned.append((offset, size))
                self.stats.pinned_bytes += size
        except NativeError as e:
            logger.warning("the resident set is not pinned (%s): the page cache may evict it; raise the locked "
                           "memory limit (ulimit -l) to pin it", e)
        try:
            for layer, tensors in self.slices.items():
                for offset, size in tensors:
                    pagecache.advise(self.base + offset, size * self.n_expert, pagecache.MADV_RANDOM)
        except NativeError as e:
            logger.warning("the streamed experts keep the kernel's read-around (%s)", e)

    def _to_pin(self) -> list[tuple[int, int]]:
        """(offset, bytes) of what is pinned in the page cache: the resident tensors and resident experts."""
        return list(self.whole) + [(offset + e * size, size) for layer, tensors in self.slices.items()
                                   for offset, size in tensors for e in self.resident[layer]]

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


class OwnedExpertStreamer(ExpertStreamer):
    """--stream-method own: the streamed experts in memory of the streamer's
    own, not the page cache. At attach the whole pages of each streamed
    tensor become anonymous memory in place (llama.cpp's pointers stay
    valid; the pages are zero), and the plan's resident experts are read
    there once. A routed slice not held is read there with O_DIRECT (no
    copy through the page cache, no reclaim of file pages) by the readers,
    and the graph goes on only when the layer's reads are done: a page not
    read would be zeros, never the file's, so no layer computes before its
    slices are in. What it holds stays within the plan's share for streamed
    experts (tiers.cache_bytes; one layer's routed set at least): before a
    layer's reads, the slices used longest ago, of other layers, are given
    back (MADV_DONTNEED). Partial pages at a tensor's ends stay the file's."""

    def __init__(self, path, tiers, readers: int = 8):
        super().__init__(path, tiers, "pread", readers)
        self.method = "own"
        try:
            self.direct = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
        except OSError as e:
            os.close(self.fd)
            raise GenerationError(f"--stream-method own reads {self.path} with O_DIRECT, which its filesystem "
                                  f"refuses ({e.strerror}): use --stream-method fadvise (the default)") from None
        self.budget = tiers.cache_bytes
        self.held: collections.OrderedDict = collections.OrderedDict()   # (layer, expert) -> bytes, oldest first
        self.held_bytes = 0
        self._inner: dict[int, tuple[int, int]] = {}      # a streamed tensor's offset -> its anonymous pages

    def attach(self) -> None:
        super().attach()
        if self.base is None:
            raise GenerationError(f"--stream-method own needs {self.path} mapped (load mode mmap)")
        self.budget = self._room()
        for layer, tensors in self.slices.items():
            for offset, size in tensors:
                lo, n = pagecache.inner_pages(self.base + offset, size * self.n_expert)
                pagecache.anonymous(lo, n)
                self._inner[offset] = (lo, lo + n)
            for e in self.resident[layer]:               # the plan's resident experts: read once, kept
                for addr, at, n in self._reads(layer, e):
                    pagecache.read_into(self.direct, addr, at, n)

    def _to_pin(self) -> list[tuple[int, int]]:
        """The resident tensors only: the resident experts are read into its own memory, not pinned in the cache."""
        return list(self.whole)

    def _room(self) -> int:
        """What it may hold: the plan's share, within what the memory left now
        can take. Its memory is not the page cache: nothing reclaims it, so
        beside the pinned set and the resident experts it must leave a margin
        (1/16 of the memory, 16 MiB at least) and a whole layer's experts (a
        prompt may route to all of them at once). Too little is an error."""
        from ..placement.devices import cgroup_memory
        held = cgroup_memory()
        free = held[0] if held is not None else psutil.virtual_memory().available
        total = held[1] if held is not None else psutil.virtual_memory().total
        resident_experts = sum(size for layer, tensors in self.slices.items() for _, size in tensors
                               for _ in self.resident[layer])
        layer_bytes = max(sum(size for _, size in tensors) for tensors in self.slices.values()) * self.n_expert
        room = free - self.stats.pinned_bytes - resident_experts - max(total // 16, 16 << 20) - layer_bytes
        if room < 0:
            raise GenerationError(f"--stream-method own: {free / 2**20:.0f} MiB of memory left cannot hold the "
                                  f"pinned set ({self.stats.pinned_bytes / 2**20:.0f} MiB), the resident experts and "
                                  f"a layer's experts ({layer_bytes / 2**20:.0f} MiB) with a margin; its memory is "
                                  "not reclaimed as the page cache is: use --stream-method fadvise (the default)")
        return min(self.budget, room)

    def _reads(self, layer: int, e: int) -> list[tuple[int, int, int]]:
        """(address, file offset, bytes): the whole pages of expert e's slices that are this streamer's."""
        out = []
        for offset, size in self.slices[layer]:
            ilo, ihi = self._inner[offset]
            start = self.base + offset + e * size
            lo = max(ilo, start // pagecache.PAGE * pagecache.PAGE)
            hi = min(ihi, -(-(start + size) // pagecache.PAGE) * pagecache.PAGE)
            if hi > lo:
                out.append((lo, lo - self.base, hi - lo))
        return out

    def __call__(self, name: str, _weights: np.ndarray, ids: np.ndarray | None) -> None:
        tensors, chosen = self.routed(name, ids)
        if not tensors:
            return
        layer, size = int(name.rpartition("-")[2]), sum(s for _, s in tensors)
        self.stats.routed += len(chosen) * len(tensors)
        missing = [e for e in chosen if (layer, e) not in self.held]
        for e in chosen:
            if (layer, e) in self.held:
                self.held.move_to_end((layer, e))
        self._make_room(layer, size * len(missing))
        reads = [self._pool.submit(pagecache.read_into, self.direct, addr, at, n)
                 for e in missing for addr, at, n in self._reads(layer, e)]
        for e in missing:
            self.held[(layer, e)] = size
            self.held_bytes += size
        self.stats.missed += len(missing) * len(tensors)
        self.stats.bytes_read += size * len(missing)
        for r in reads:
            r.result()                                   # raises what a read raised: the graph stops there

    def _make_room(self, layer: int, needed: int) -> None:
        """Gives back the slices used longest ago, of other layers, until `needed` more bytes fit the budget."""
        while self.held and self.held_bytes + needed > self.budget:
            (held_layer, e), n = next(iter(self.held.items()))
            if held_layer == layer:
                return                                   # the rest is this layer's routed set
            del self.held[(held_layer, e)]
            self.held_bytes -= n
            for offset, size in self.slices[held_layer]:
                pagecache.drop(self.base + offset + e * size, size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.direct)
        super().close()


def stream_experts(path, tiers, context, method: str = "fadvise") -> ExpertStreamer:
    """A streamer for the plan's tiers, pinned and listening on the context's tap."""
    streamer = OwnedExpertStreamer(path, tiers) if method == "own" else ExpertStreamer(path, tiers, method)
    try:
        streamer.attach()
        context.native.tap.keep(streamer, {WEIGHTS: TOPK})
    except BaseException:
        streamer.close()
        raise
    return streamer
