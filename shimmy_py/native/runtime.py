"""Loads the native libraries once per process, verified and initialised.

`lib()` finds the build (install.py), binds it (binding.py), checks every
struct layout against the C probe (layout.py), initialises llama.cpp's
backends and routes its log into Python (log.py); `tap_filter_lib()` loads
the graph tap's C filter beside them on first use. At interpreter exit the
hooks registered with `before_exit` run (the owners free what is still open,
children first) before the log callback goes.
"""
from __future__ import annotations

import atexit
import threading
from typing import Callable

from . import install, layout, log
from .binding import STRUCTS, Lib, TapFilterLib, ggml_log_callback

_lock = threading.Lock()
_lib: Lib | None = None
_tap_filter: TapFilterLib | None = None
_exit_hooks: list[Callable[[], None]] = []


def lib() -> Lib:
    global _lib
    if _lib is not None:  # the common case takes no lock
        return _lib
    with _lock:
        if _lib is None:
            _lib = _load()
        return _lib


def tap_filter_lib() -> TapFilterLib:
    """The graph tap's C filter, beside the libraries lib() loaded."""
    global _tap_filter
    if _tap_filter is None:
        loaded = lib()
        with _lock:
            if _tap_filter is None:
                _tap_filter = TapFilterLib(loaded.lib_dir)
    return _tap_filter


def before_exit(hook: Callable[[], None]) -> None:
    """Runs `hook` at interpreter exit, while the libraries are still usable."""
    _exit_hooks.append(hook)


def _load() -> Lib:
    lib_dir = install.lib_dir()
    loaded = Lib(lib_dir)
    source = install.build_info().get("source", f"unknown build in {lib_dir}")
    version = f"{source}, ggml {loaded.ggml_version().decode()}"
    layout.verify(STRUCTS, lib_dir / "layout.json", version)
    loaded.llama_log_set(log.c_callback, None)
    loaded.llama_backend_init()
    atexit.register(_at_exit, loaded)
    return loaded


def _at_exit(loaded: Lib) -> None:
    for hook in reversed(_exit_hooks):
        hook()
    loaded.llama_log_set(ggml_log_callback(), None)  # NULL: back to stderr
