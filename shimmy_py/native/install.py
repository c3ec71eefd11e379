"""Where the native build lives: libraries, llama.cpp's tools, the vocabulary.

native/build.sh installs into `$SHIMMY_PY_CACHE/<key>/install` (default cache
`~/.cache/shimmy_py`) and points `$SHIMMY_PY_CACHE/current` at it, so that after
`make native` everything is found with no environment variable.
`SHIMMY_PY_LIB_DIR` names a library folder directly (its parent holds bin/).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import NativeError

BUILD_HINT = "build it with `make native` (native/build.sh)"


def cache_dir() -> Path:
    return Path(os.environ.get("SHIMMY_PY_CACHE", Path.home() / ".cache" / "shimmy_py"))


def lib_dir() -> Path:
    """The folder holding libllama.so and the struct layout probe's output."""
    override = os.environ.get("SHIMMY_PY_LIB_DIR")
    path = Path(override) if override else cache_dir() / "current" / "lib"
    if not (path / "libllama.so").exists():
        origin = "SHIMMY_PY_LIB_DIR" if override else "the default build location"
        raise NativeError(f"libllama.so not found in {path} ({origin}); {BUILD_HINT}")
    return path


def find_install() -> Path:
    """The install root: lib/, bin/ (llama.cpp's tools) and share/ (vocabulary)."""
    return lib_dir().resolve().parent


def tool(name: str) -> Path:
    """Path of one of llama.cpp's own programs built by native/build.sh."""
    path = find_install() / "bin" / name
    if not os.access(path, os.X_OK):
        raise NativeError(f"{name} not found at {path}; {BUILD_HINT}")
    return path


def _version_file(path: Path) -> dict[str, str]:
    """The key=value lines native/build.sh wrote to a build's VERSION file ({} if none)."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def build_info() -> dict[str, str]:
    """The VERSION lines of the libraries in use (source, options)."""
    return _version_file(lib_dir() / "VERSION")


def batch_invariant() -> bool:
    """Whether the libraries were built with `native/build.sh --batch-invariant`
    (llamafile off: a sequence's logits do not depend on what shares its batch)."""
    return build_info().get("mode") == "batch-invariant"


BUILD_MODES = ("default", "batch-invariant", "stock")


def mode_tool(mode: str, name: str) -> Path:
    """One of llama.cpp's programs from the last build of `mode`: "default",
    "batch-invariant" or "stock" (the peer benchmarks compare against, built
    as users build llama.cpp); native/build.sh links each as $SHIMMY_PY_CACHE/MODE."""
    path = cache_dir() / mode / "bin" / name
    if not os.access(path, os.X_OK):
        flag = "" if mode == "default" else f" --{mode}"
        raise NativeError(f"{name} of the {mode} build not found at {path}; build it with `native/build.sh{flag}`")
    return path


def mode_info(mode: str) -> dict[str, str]:
    """The VERSION lines of the last build of `mode` ({} if none)."""
    return _version_file(cache_dir() / mode / "lib" / "VERSION")


def std_regex_errors(patterns: list[str]) -> dict[str, str]:
    """The patterns llama.cpp's std::regex cannot compile, with its reason
    (native/regex_check.cpp, built beside the libraries). Empty when the
    checker is not built: then nothing can be loaded here either. No patterns:
    no process (every plan asks, and a worker plans as it loads)."""
    import subprocess
    if not patterns:
        return {}
    try:
        checker = tool("regex_check")
    except NativeError:
        return {}
    proc = subprocess.run([str(checker), *patterns], capture_output=True, text=True, timeout=30)
    answers = proc.stdout.splitlines()
    return {p: a.removeprefix("error: ") for p, a in zip(patterns, answers) if a != "ok"}
