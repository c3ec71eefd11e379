"""A tap on llama.cpp's graph: the evaluation callback (`cb_eval` of the
context parameters) that copies chosen intermediate tensors out as they are
computed.

The scheduler asks the callback about every node of the graph (`ask`); for a
node whose name (less its "-<layer>") the listener asked for it answers yes, and
calls again once the node is computed, when the tap copies it (and, where
asked, the node's second operand: a matmul's input, a get_rows' indices) into
NumPy arrays and hands them to the current sink. Each yes pauses the graph's
computation at that node, so a listener asks for as few nodes as it can. A
context made without a tap has no callback at all: tapping costs nothing
unless it was asked for.
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

# where a node's name lies in it: the scheduler asks about every node of every
# decode, and reading the name alone is cheaper than building the structure
_NAME, _NAME_SIZE = ggml_tensor.name.offset, ggml_tensor.name.size

# sink(name, data, operand): name as the graph has it ("ffn_moe_weights-3"); operand
# is the node's second source (a matmul's input, a get_rows' indices) when its prefix asked for it
Sink = Callable[[str, np.ndarray, "np.ndarray | None"], None]


def read_tensor(t: ggml_tensor) -> np.ndarray:
    """A copy of a computed tensor (any backend, views included), shaped as
    NumPy orders it: ne reversed."""
    dtype = _DTYPES.get(t.type)
    if dtype is None:
        raise NativeError(f"tensor {t.name.decode(errors='replace')}: ggml type {t.type} is not read by the tap")
    ne, nb = t.ne[::-1], t.nb[::-1]
    span = sum((n - 1) * b for n, b in zip(ne, nb)) + nb[-1]   # ggml_nbytes of a (possibly strided) view
    raw = np.empty(span, dtype=np.uint8)
    lib().ggml_backend_tensor_get(ctypes.addressof(t), raw.__array_interface__["data"][0], 0, span)
    out = np.ndarray(ne, dtype, raw, 0, nb)
    return out if out.flags.c_contiguous else out.copy()


def _operand(t: ggml_tensor, want: bool | bytes, name: bytes) -> ggml_tensor | None:
    """The node's second source; where `want` names it, checked to be that
    node of the same layer."""
    src = ggml_tensor.from_address(t.src[1]) if t.src[1] else None
    if want is not True and (src is None or src.name != want + b"-" + name.rpartition(b"-")[2]):
        found = src.name.decode(errors="replace") if src is not None else "nothing"
        raise NativeError(f"node {name.decode(errors='replace')}: its operand is {found}, "
                          f"not {want.decode()}: this graph is not the one the tap reads")
    return src


class Tap:
    """The callback of one context. `listen(sink, names)` starts copying the
    nodes whose base names (before "-<layer>") are in `names`, which maps each to
    whether the node's second operand is copied too: False, True, or the base
    name the operand must have (an error if the graph has another there);
    `stop()` ends it. While nothing listens every node is declined."""

    def __init__(self):
        self.names: dict[bytes, bool | bytes] = {}
        self.sink: Sink | None = None
        self.error: BaseException | None = None
        self.callback = ggml_backend_sched_eval_callback(self._on_node)   # kept alive while the tap lives

    @property
    def address(self) -> int:
        return ctypes.cast(self.callback, ctypes.c_void_p).value

    def listen(self, sink: Sink, names: dict[str, bool | str]) -> None:
        self.names = {n.encode(): operand.encode() if isinstance(operand, str) else operand
                      for n, operand in names.items()}
        self.sink, self.error = sink, None

    def stop(self) -> None:
        self.sink, self.names = None, {}

    def _on_node(self, tensor, ask, _user) -> bool:
        # an exception must not cross into C: it is kept, and raised by take_error()
        try:
            sink = self.sink
            if sink is None:
                return not ask
            name = ctypes.string_at(tensor + _NAME, _NAME_SIZE).partition(b"\0")[0]
            base, _, layer = name.rpartition(b"-")
            operand = self.names.get(base) if layer.isdigit() else None   # not "... (reshaped)"
            if ask:
                return operand is not None
            if operand is not None:
                t = ggml_tensor.from_address(tensor)
                src = _operand(t, operand, name) if operand else None
                sink(name.decode(), read_tensor(t), read_tensor(src) if src is not None else None)
            return True
        except BaseException as e:   # noqa: BLE001 - reported after llama_decode returns
            self.error = self.error or e
            return True

    def take_error(self) -> None:
        """Raises what the callback met during the last decode, once."""
        error, self.error = self.error, None
        if error is not None:
            raise NativeError(f"the graph tap failed: {error}") from error
