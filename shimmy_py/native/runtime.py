"""Loads the native libraries once per process, verified and initialised.

`lib()` finds the build (native.py), binds it (_llama.py), checks every struct
layout against the C probe (_layout.py), initialises llama.cpp's backends and
routes its log into Python (_log.py). At interpreter exit the owned native
objects still open are freed (children first) before the log callback goes.
"""
from __future__ import annotations

import atexit
import threading

from . import layout as _layout

from . import log as _log

from . import install as native
from .binding import STRUCTS, Lib

_lock = threading.Lock()
_lib: Lib | None = None


def lib() -> Lib:
    global _lib
    if _lib is not None:  # the common case takes no lock
        return _lib
    with _lock:
        if _lib is None:
            _lib = _load()
        return _lib


def library_version(lib_dir) -> str:
    info = native.build_info()
    return info.get("source", f"unknown build in {lib_dir}")


def _load() -> Lib:
    lib_dir = native.lib_dir()
    loaded = Lib(lib_dir)
    version = f"{library_version(lib_dir)}, ggml {loaded.ggml_version().decode()}"
    _layout.verify(STRUCTS, lib_dir / "layout.json", version)
    loaded.llama_log_set(_log.c_callback, None)
    loaded.llama_backend_init()
    atexit.register(_at_exit, loaded)
    return loaded


def _at_exit(loaded: Lib) -> None:
    from .owned import close_all
    close_all()
    loaded.llama_log_set(_log.ggml_log_callback(), None)
