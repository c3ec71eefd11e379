"""The page cache under a model file that llama.cpp maps: where the mapping
lies in this process (/proc/self/maps), and the kernel calls that steer it
(madvise, mlock, mincore) on address ranges Python does not own, through
libc. Errors become NativeError here, naming the call and errno.

File-level hints (posix_fadvise, pread) need no address and live in the
streamer itself (generation/streaming.py), through `os`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from ..errors import NativeError

PAGE = os.sysconf("SC_PAGE_SIZE")
MADV_NORMAL, MADV_RANDOM, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 3, 4
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x02, 0x10, 0x20

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for name in ("madvise", "mlock", "munlock", "mincore"):
            getattr(_libc, name).restype = ctypes.c_int
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long]
        _libc.pread.restype = ctypes.c_ssize_t
        _libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.mlock.argtypes = _libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    return _libc


def mapping_base(path: str | os.PathLike) -> int | None:
    """The address where offset 0 of `path` lies in this process's mapping of
    it that covers the most of the file (llama.cpp maps the whole file once;
    a reader may map a part of it too), or None if unmapped."""
    real = os.path.realpath(path)
    covered: dict[int, int] = {}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].rstrip("\n") == real:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                base = start - int(parts[2], 16)
                covered[base] = covered.get(base, 0) + end - start
    return max(covered, key=covered.get) if covered else None


def _span(addr: int, length: int) -> tuple[int, int]:
    """The whole pages covering [addr, addr + length)."""
    lo = addr - addr % PAGE
    hi = -(-(addr + length) // PAGE) * PAGE
    return lo, hi - lo


def _check(rc: int, call: str, addr: int, length: int) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NativeError(f"{call}({addr:#x}, {length}) failed: {errno.errorcode.get(err, err)} "
                          f"({os.strerror(err)})")


def advise(addr: int, length: int, advice: int) -> None:
    lo, n = _span(addr, length)
    _check(_c().madvise(lo, n, advice), "madvise", lo, n)


def lock(addr: int, length: int) -> None:
    """Pins the pages in RAM (reads them in first): the kernel will not evict them."""
    lo, n = _span(addr, length)
    _check(_c().mlock(lo, n), "mlock", lo, n)


def unlock(addr: int, length: int) -> None:
    lo, n = _span(addr, length)
    _check(_c().munlock(lo, n), "munlock", lo, n)


def resident_share(addr: int, length: int) -> float:
    """The share of the range's pages in RAM now (mincore)."""
    lo, n = _span(addr, length)
    vec = ctypes.create_string_buffer(n // PAGE)
    _check(_c().mincore(lo, n, vec), "mincore", lo, n)
    raw = vec.raw
    return sum(b & 1 for b in raw) / len(raw) if raw else 1.0


def inner_pages(addr: int, length: int) -> tuple[int, int]:
    """The whole pages inside [addr, addr + length): (first address, bytes), bytes 0 if none."""
    lo = -(-addr // PAGE) * PAGE
    hi = (addr + length) // PAGE * PAGE
    return lo, max(0, hi - lo)


def anonymous(addr: int, length: int) -> None:
    """Replaces the pages of [addr, addr + length) (page-aligned) in place by
    private anonymous memory, zero until written: what was mapped there is
    no longer read through this range."""
    if length <= 0:
        return
    got = _c().mmap(addr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
    if got != addr:
        _check(-1, "mmap", addr, length)


def read_into(fd: int, addr: int, offset: int, length: int) -> None:
    """pread(2) of `length` bytes at `offset` of `fd` straight to `addr` (an
    O_DIRECT fd: page-aligned address, offset and length), with the GIL released."""
    c, done = _c(), 0
    while done < length:
        n = c.pread(fd, addr + done, length - done, offset + done)
        if n <= 0:
            err = ctypes.get_errno() if n < 0 else 0
            raise NativeError(f"pread({fd}, {addr + done:#x}, {length - done}, {offset + done}) "
                              f"{'failed: ' + os.strerror(err) if err else 'read nothing: the file is shorter'}")
        done += n


def drop(addr: int, length: int) -> None:
    """The whole pages inside the range given back (anonymous memory: zero when next read)."""
    lo, n = inner_pages(addr, length)
    if n:
        _check(_c().madvise(lo, n, MADV_DONTNEED), "madvise", lo, n)
