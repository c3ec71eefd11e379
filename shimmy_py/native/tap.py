"""A tap on llama.cpp's graph: the evaluation callback (`cb_eval` of the
context parameters) that copies chosen intermediate tensors out as they are
computed.

The scheduler asks the callback about every node of the graph (`ask`),
hundreds per decoded token, and calls again once a node it was told yes for is
computed. The asks are answered in C (native/tap_filter.c, built beside the
libraries): yes for a node whose name, less its "-<layer>", the listener asked
for. Only those computed nodes reach Python, where the tap copies each (and,
where asked, the node's second operand: a matmul's input, a get_rows' indices)
into NumPy arrays and hands them to the current sink. Each yes pauses the
graph's computation at that node, so a listener asks for as few nodes as it
can. A context made without a tap has no callback at all: tapping costs
nothing unless it was asked for.
"""
from __future__ import annotations

import ctypes
from typing import Callable

import numpy as np

from ..errors import NativeError
from .binding import ggml_backend_sched_eval_callback, ggml_tensor
from .runtime import lib, tap_filter_lib

# enum ggml_type values of the tensors a tap reads
_DTYPES = {0: np.float32, 1: np.float16, 26: np.int32, 27: np.int64}

# where a node's name lies in it: reading the name alone is cheaper than
# building the structure
_NAME, _NAME_SIZE = ggml_tensor.name.offset, ggml_tensor.name.size


class _Filter(ctypes.Structure):
    """struct shimmy_tap (native/tap_filter.c): what the C side asks for, and
    the Python callback it hands computed nodes to."""
    _fields_ = [("computed", ggml_backend_sched_eval_callback),
                ("n_names", ctypes.c_int),
                ("names", (ctypes.c_char * _NAME_SIZE) * 8)]


def _check_filter_layout() -> None:
    helper = tap_filter_lib()
    want = (helper.shimmy_tap_size(), helper.shimmy_tap_names_offset(),
            helper.shimmy_tap_max_names(), helper.shimmy_tap_max_name())
    have = (ctypes.sizeof(_Filter), _Filter.names.offset, len(_Filter().names), _NAME_SIZE)
    if want != have:
        raise NativeError(f"struct shimmy_tap is (size, names offset, names, name size) {want} in "
                          f"native/tap_filter.c but {have} in tap.py; rebuild with `make native`")


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
    `stop()` ends it. `keep(sink, names)` adds a listener that stays for the
    context's life (the expert streamer), heard beside the current one.
    While nothing listens every node is declined (in C)."""

    def __init__(self):
        _check_filter_layout()
        self.names: dict[bytes, bool | bytes] = {}
        self.sink: Sink | None = None
        self.kept: list[tuple[Sink, dict[bytes, bool | bytes]]] = []
        self.error: BaseException | None = None
        # the C filter and the Python callback it calls, kept alive while the tap lives
        self.filter = _Filter(computed=ggml_backend_sched_eval_callback(self._on_computed))
        self._eval = tap_filter_lib().shimmy_tap_eval

    @property
    def address(self) -> int:
        """cb_eval: the C filter."""
        return ctypes.cast(self._eval, ctypes.c_void_p).value

    @property
    def user_data(self) -> int:
        """cb_eval_user_data: the filter's struct."""
        return ctypes.addressof(self.filter)

    def listen(self, sink: Sink, names: dict[str, bool | str]) -> None:
        self.names, self.sink, self.error = self._encoded(names), sink, None
        self._set_filter()

    def keep(self, sink: Sink, names: dict[str, bool | str]) -> None:
        self.kept.append((sink, self._encoded(names)))
        self._set_filter()

    def stop(self) -> None:
        self.sink, self.names = None, {}
        self._set_filter()

    def _encoded(self, names: dict[str, bool | str]) -> dict[bytes, bool | bytes]:
        encoded = {n.encode(): operand.encode() if isinstance(operand, str) else operand
                   for n, operand in names.items()}
        for n in encoded:
            if not 0 < len(n) < _NAME_SIZE or b"\0" in n:
                raise NativeError(f"node name {n!r}: 1 to {_NAME_SIZE - 1} bytes, no NUL")
        return encoded

    def _listeners(self):
        return ([(self.sink, self.names)] if self.sink is not None else []) + self.kept

    def _set_filter(self) -> None:
        wanted: dict[bytes, bool | bytes] = {}
        for _, names in self._listeners():
            for n, operand in names.items():
                if wanted.get(n, operand) != operand:
                    raise NativeError(f"two listeners read node {n.decode()} with different operands")
                wanted[n] = operand
        if len(wanted) > len(self.filter.names):
            raise NativeError(f"the tap reads at most {len(self.filter.names)} node names, not {len(wanted)}")
        self.filter.n_names = 0
        for i, n in enumerate(wanted):
            self.filter.names[i].value = n
        self.filter.n_names = len(wanted)

    def _on_computed(self, tensor, _ask, _user) -> bool:
        # called only for the nodes the filter asked for; an exception must not
        # cross into C: it is kept, and raised by take_error()
        try:
            name = ctypes.string_at(tensor + _NAME, _NAME_SIZE).partition(b"\0")[0]
            base = name.rpartition(b"-")[0]
            heard = [(sink, names[base]) for sink, names in self._listeners() if base in names]
            if heard:
                t = ggml_tensor.from_address(tensor)
                operand = heard[0][1]
                src = _operand(t, operand, name) if operand else None
                data, extra = read_tensor(t), (read_tensor(src) if src is not None else None)
                for sink, _ in heard:
                    sink(name.decode(), data, extra)
            return True
        except BaseException as e:   # noqa: BLE001 - reported after llama_decode returns
            self.error = self.error or e
            return True

    def take_error(self) -> None:
        """Raises what the callback met during the last decode, once."""
        error, self.error = self.error, None
        if error is not None:
            raise NativeError(f"the graph tap failed: {error}") from error
