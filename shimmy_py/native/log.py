"""Routes llama.cpp's log through a ctypes callback into Python's `logging`.

Logger "shimmy_py.llama"; quiet (warnings and errors only) unless `verbose()`
is called. llama.cpp sends lines in pieces (level CONT continues the previous
one), so pieces are joined until a newline. Observers (see `capture`) also see
each whole line: the placement report reads llama.cpp's buffer sizes that way.
llama.cpp's warning for a tensor it skips is shown at debug level for the
tensors the plan expects it to skip (`expected_unused`: a NextN block).
`load_failure` picks from captured lines the one that says why a load failed.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading

from .binding import ggml_log_callback

logger = logging.getLogger("shimmy_py.llama")
logger.setLevel(logging.WARNING)

# enum ggml_log_level { NONE = 0, DEBUG = 1, INFO = 2, WARN = 3, ERROR = 4, CONT = 5 };
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_CONT = 5
_UNUSED = re.compile(r"model has unused tensor (\S+) ")


class _Router:
    def __init__(self):
        self.lock = threading.Lock()
        self.pending = ""
        self.level = logging.INFO
        self.observers: list[list[str]] = []
        self.expected_unused: set[str] = set()

    def __call__(self, level: int, text: bytes, _user_data) -> None:
        try:
            piece = text.decode("utf-8", errors="replace") if text else ""
            with self.lock:
                if level != _CONT:
                    self.level = _LEVELS.get(level, logging.INFO)
                self.pending += piece
                if not self.pending.endswith("\n"):
                    return
                lines, self.pending = self.pending.splitlines(), ""
                for sink in self.observers:
                    sink.extend(lines)
            for line in lines:
                m = _UNUSED.search(line) if self.level == logging.WARNING else None
                logger.log(logging.DEBUG if m and m.group(1) in self.expected_unused else self.level, line)
        except Exception:  # an exception must never cross into C
            pass


router = _Router()
# Kept referenced for the life of the process: llama.cpp holds the pointer.
c_callback = ggml_log_callback(router)


def verbose(on: bool = True) -> None:
    """Shows llama.cpp's informational log (on stderr unless logging is configured)."""
    logger.setLevel(logging.DEBUG if on else logging.WARNING)
    if on and not logging.getLogger().handlers and not logger.handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")


@contextlib.contextmanager
def expected_unused(names):
    """Inside the block, llama.cpp skipping one of `names` is not a warning."""
    names = set(names)
    with router.lock:
        router.expected_unused |= names
    try:
        yield
    finally:
        with router.lock:
            router.expected_unused -= names


@contextlib.contextmanager
def capture():
    """Collects the whole log lines llama.cpp writes inside the `with` block."""
    lines: list[str] = []
    with router.lock:
        router.observers.append(lines)
    try:
        yield lines
    finally:
        with router.lock:      # by identity: two observers holding the same lines are equal lists
            router.observers[:] = [o for o in router.observers if o is not lines]


def load_failure(log_lines: list[str]) -> str:
    """The line of llama.cpp's log that says why a load failed: its "error
    loading model: ..." (a missing tensor, a wrong shape), not the closing
    "failed to load model"."""
    for line in log_lines:
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    errors = [ln.strip() for ln in log_lines if "error" in ln.lower() or "failed" in ln.lower()]
    return errors[0] if errors else "see the log with verbose=True"
