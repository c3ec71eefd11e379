"""The base of every owner of a native pointer, and the registry that frees
whatever is still open at interpreter exit.

Each owner frees its pointer exactly once: `close()` is safe to call twice,
owners are context managers, a child keeps its parent alive, and at exit
everything still open is freed newest first (children before parents). A NULL
becomes a NativeError naming the function.

Every native call on an owner runs under its lock (`using()`), and `close()`
takes the same lock: a close from another thread, or at interpreter exit while
a daemon thread decodes, waits for the call in flight and then frees; the next
call raises NativeError instead of touching freed memory. Owners that are used
together (a context and its batch) share one lock.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from typing import Iterator

from ..errors import NativeError
from . import runtime

_live: "weakref.WeakValueDictionary[int, Owned]" = weakref.WeakValueDictionary()
_order = itertools.count()
_live_lock = threading.Lock()


def close_all() -> None:
    """Frees every owner still open, newest first."""
    with _live_lock:
        objs = [_live[k] for k in sorted(_live, reverse=True) if k in _live]
    for obj in objs:
        obj.close()


runtime.before_exit(close_all)


class Owned:
    """Base: holds `_ptr` and frees it with `_free` once."""

    def __init__(self, ptr, what: str, lock: threading.RLock | None = None):
        if not ptr:
            raise NativeError(f"{what} returned NULL")
        self._ptr = ptr
        self._lock = lock if lock is not None else threading.RLock()
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

    @contextlib.contextmanager
    def using(self) -> Iterator:
        """The pointer, held open for the native calls inside the block."""
        with self._lock:
            yield self.ptr()

    def close(self) -> None:
        with self._lock:
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
