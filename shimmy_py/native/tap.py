"""A tap on llama.cpp's graph: the evaluation callback (`cb_eval` of the
context parameters) that copies chosen intermediate tensors out as they are
computed.

The scheduler asks the callback about every node of the graph (`ask`); for a
node whose name (less its "-<layer>") the listener asked for it answers yes, and
calls again once the node is computed, when the tap copies it (and, where
asked, the node's second operand: a matmul's input) into NumPy arrays and
hands them to the current sink. A context made without a tap has no callback
at all: tapping costs nothing unless it was asked for.
"""
from __future__ import annotations

import ctypes
from typing import Callable

import numpy as np

from ..errors import NativeError
from .binding import ggml_backend_sched_eval_callback, ggml_tensor
from .runtime import lib

# enum ggml_type values of the tensors a tap reads
_DTYPES = {0: np.float32, 1: np.float16, 26: np.int32, 27: np.int64}

# sink(name, data, operand): name as the graph has it ("ffn_moe_topk-3"); operand
# is the node's second source (a matmul's input) when its prefix asked for it
Sink = Callable[[str, np.ndarray, "np.ndarray | None"], None]


def read_tensor(t: ggml_tensor) -> np.ndarray:
    """A copy of a computed tensor (any backend, views included), shaped as
    NumPy orders it: ne reversed."""
    dtype = _DTYPES.get(t.type)
    if dtype is None:
        raise NativeError(f"tensor {t.name.decode(errors='replace')}: ggml type {t.type} is not read by the tap")
    ne = [int(n) for n in t.ne]
    nb = [int(b) for b in t.nb]
    span = sum((n - 1) * b for n, b in zip(ne, nb)) + nb[0]   # ggml_nbytes of a (possibly strided) view
    raw = np.empty(span, dtype=np.uint8)
    lib().ggml_backend_tensor_get(ctypes.byref(t), raw.ctypes.data, 0, span)
    view = np.lib.stride_tricks.as_strided(raw.view(dtype), shape=ne[::-1], strides=nb[::-1])
    return np.array(view)


class Tap:
    """The callback of one context. `listen(sink, names)` starts copying the
    nodes whose base names (before "-<layer>") are in `names`, which maps each to
    whether the node's second operand is copied too; `stop()` ends it. While
    nothing listens every node is declined."""

    def __init__(self):
        self.names: dict[bytes, bool] = {}
        self.sink: Sink | None = None
        self.error: BaseException | None = None
        self.callback = ggml_backend_sched_eval_callback(self._on_node)   # kept alive while the tap lives

    @property
    def address(self) -> int:
        return ctypes.cast(self.callback, ctypes.c_void_p).value

    def listen(self, sink: Sink, names: dict[str, bool]) -> None:
        self.names = {n.encode(): operand for n, operand in names.items()}
        self.sink, self.error = sink, None

    def stop(self) -> None:
        self.sink, self.names = None, {}

    def _on_node(self, tensor, ask, _user) -> bool:
        # an exception must not cross into C: it is kept, and raised by take_error()
        try:
            sink = self.sink
            if sink is None:
                return not ask
            t = ctypes.cast(tensor, ctypes.POINTER(ggml_tensor)).contents
            base, _, layer = t.name.rpartition(b"-")
            operand = self.names.get(base) if layer.isdigit() else None   # not "... (reshaped)"
            if ask:
                return operand is not None
            if operand is not None:
                src = ctypes.cast(t.src[1], ctypes.POINTER(ggml_tensor)).contents if operand and t.src[1] else None
                sink(t.name.decode(), read_tensor(t), read_tensor(src) if src is not None else None)
            return True
        except BaseException as e:   # noqa: BLE001 - reported after llama_decode returns
            self.error = self.error or e
            return True

    def take_error(self) -> None:
        """Raises what the callback met during the last decode, once."""
        error, self.error = self.error, None
        if error is not None:
            raise NativeError(f"the graph tap failed: {error}") from error
