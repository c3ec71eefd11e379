"""Fast, validating reader of a GGUF file's header: metadata and tensor table.

It keeps the `gguf` package's types and constants but not its eager parsing:
`gguf.GGUFReader` decodes every element of the 100k-entry tokenizer arrays
(seconds on DeepSeek's vocabulary), while the planner needs none of them. Here
large arrays are skipped and kept as `ArrayRef`s that decode on demand, and no
tensor bytes are read at all. Every structural problem raises `GGUFError` naming
the file and the cause.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from gguf import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

from ..errors import GGUFError
from .format import n_elements, tensor_nbytes

# Arrays with at most this many elements are decoded eagerly (per-layer hparams).
EAGER_ARRAY_LIMIT = 1024

_SCALAR = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
_NUMPY = {
    GGUFValueType.UINT8: np.uint8, GGUFValueType.INT8: np.int8, GGUFValueType.UINT16: np.uint16,
    GGUFValueType.INT16: np.int16, GGUFValueType.UINT32: np.uint32, GGUFValueType.INT32: np.int32,
    GGUFValueType.FLOAT32: np.float32, GGUFValueType.BOOL: np.bool_, GGUFValueType.UINT64: np.uint64,
    GGUFValueType.INT64: np.int64, GGUFValueType.FLOAT64: np.float64,
}


@dataclass(frozen=True)
class ArrayRef:
    """A metadata array left undecoded: its element type, length and position."""
    path: str
    elem_type: GGUFValueType
    count: int
    offset: int

    def load(self) -> list:
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            cur = _Cursor(mm, self.path, self.offset)
            return [cur.value(self.elem_type) for _ in range(self.count)]


@dataclass(frozen=True)
class TensorInfo:
    """One row of the tensor table. `shape` is in ggml order (ne0 first)."""
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]
    offset: int  # absolute position of the data in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        return n_elements(self.shape)


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before the tensor data, as read from `path`."""
    path: str
    version: int
    metadata: Mapping[str, Any]
    kv_spans: Mapping[str, tuple[int, int]]  # key -> (start, end) of its raw bytes
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    def raw_kv(self, key: str) -> bytes:
        start, end = self.kv_spans[key]
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)


class _Cursor:
    """Reads little-endian GGUF primitives from a buffer, checking bounds."""

    def __init__(self, buf, path: str, pos: int = 0):
        self.buf, self.path, self.pos, self.size = buf, path, pos, len(buf)

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise GGUFError(f"{self.path}: truncated GGUF file: {what} at byte {self.pos} "
                            f"needs {n} bytes but the file has {self.size}")

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def string(self, what: str = "string") -> str:
        n = self.scalar("<Q", what)
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.scalar("<I", what)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise GGUFError(f"{self.path}: {what} has unknown value type {raw}") from None

    def value(self, vtype: GGUFValueType, what: str = "value") -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string(what)
        if vtype == GGUFValueType.ARRAY:
            return self.array(what, eager_limit=None)
        return self.scalar(_SCALAR[vtype], what)

    def skip_strings(self, count: int, what: str) -> None:
        buf, pos, size = self.buf, self.pos, self.size
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, what)
            pos += 8 + unpack(buf, pos)[0]
        self.pos = pos
        self.need(0, what)

    def array(self, what: str, eager_limit: int | None) -> Any:
        elem = self.value_type(what)
        count = self.scalar("<Q", what)
        start = self.pos
        if eager_limit is not None and count > eager_limit:
            if elem == GGUFValueType.STRING:
                self.skip_strings(count, what)
            elif elem == GGUFValueType.ARRAY:
                for _ in range(count):
                    self.array(what, eager_limit=0)
            else:
                n = count * struct.calcsize(_SCALAR[elem])
                self.need(n, what)
                self.pos += n
            return ArrayRef(self.path, elem, count, start)
        if elem in _NUMPY:
            n = count * np.dtype(_NUMPY[elem]).itemsize
            self.need(n, what)
            arr = np.frombuffer(self.buf, dtype=_NUMPY[elem], count=count, offset=self.pos)
            self.pos += n
            return arr.tolist()
        return [self.value(elem, what) for _ in range(count)]


def read_header(path: str | os.PathLike) -> GGUFHeader:
    """Reads and validates the header and tensor table of the GGUF file `path`."""
    path = str(path)
    if not os.path.exists(path):
        raise GGUFError(f"{path}: no such file")
    if os.path.isdir(path):
        raise GGUFError(f"{path}: is a directory, not a GGUF file")
    size = os.path.getsize(path)
    if size < 4:
        raise GGUFError(f"{path}: not a GGUF file (only {size} bytes)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return _parse(mm, path, size)


def _parse(mm, path: str, size: int) -> GGUFHeader:
    cur = _Cursor(mm, path)
    magic = cur.scalar("<I", "magic")
    if magic != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (starts with {bytes(mm[:4])!r}, expected b'GGUF')")
    version = cur.scalar("<I", "version")
    if version not in (2, 3):
        raise GGUFError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors = cur.scalar("<Q", "tensor count")
    n_kv = cur.scalar("<Q", "metadata count")
    if n_tensors > size or n_kv > size:
        raise GGUFError(f"{path}: corrupt GGUF header ({n_tensors} tensors, {n_kv} keys in {size} bytes)")

    metadata: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}
    for i in range(n_kv):
        start = cur.pos
        key = cur.string(f"metadata key #{i}")
        vtype = cur.value_type(f"metadata '{key}'")
        if vtype == GGUFValueType.ARRAY:
            metadata[key] = cur.array(f"metadata '{key}'", EAGER_ARRAY_LIMIT)
        else:
            metadata[key] = cur.value(vtype, f"metadata '{key}'")
        spans[key] = (start, cur.pos)

    alignment = int(metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT))
    if alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"{path}: general.alignment {alignment} is not a power of two")

    raw_tensors = [_tensor_row(cur, i) for i in range(n_tensors)]
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = []
    for name, ttype, shape, rel in raw_tensors:
        nbytes = _tensor_nbytes(path, name, ttype, shape)
        end = data_offset + rel + nbytes
        if end > size:
            raise GGUFError(f"{path}: truncated GGUF file: tensor '{name}' ends at byte {end} "
                            f"but the file has {size}")
        tensors.append(TensorInfo(name, ttype, shape, data_offset + rel, nbytes))
    return GGUFHeader(path, version, metadata, spans, tuple(tensors), alignment, data_offset, size)


def _tensor_row(cur: _Cursor, i: int) -> tuple[str, GGMLQuantizationType, tuple[int, ...], int]:
    name = cur.string(f"tensor #{i} name")
    n_dims = cur.scalar("<I", f"tensor '{name}' dims")
    if not 1 <= n_dims <= 4:
        raise GGUFError(f"{cur.path}: tensor '{name}' has {n_dims} dimensions (1 to 4 allowed)")
    shape = tuple(cur.scalar("<Q", f"tensor '{name}' shape") for _ in range(n_dims))
    raw_type = cur.scalar("<I", f"tensor '{name}' type")
    try:
        ttype = GGMLQuantizationType(raw_type)
    except ValueError:
        raise GGUFError(f"{cur.path}: tensor '{name}' has unknown ggml type {raw_type}") from None
    offset = cur.scalar("<Q", f"tensor '{name}' offset")
    return name, ttype, shape, offset


def _tensor_nbytes(path: str, name: str, ttype: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    try:
        return tensor_nbytes(ttype, shape)
    except ValueError as e:
        raise GGUFError(f"{path}: tensor '{name}': {e}") from None


def tensor_array(header: GGUFHeader, info: TensorInfo) -> np.ndarray:
    """Reads one F32/F16 tensor as a NumPy array in row-major (reversed ggml) shape."""
    dtypes = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}
    if info.ggml_type not in dtypes:
        raise GGUFError(f"{header.path}: tensor '{info.name}' is {info.ggml_type.name}; only F32/F16 can be read")
    data = np.fromfile(header.path, dtype=dtypes[info.ggml_type], count=info.n_elements, offset=info.offset)
    return data.reshape(tuple(reversed(info.shape)))

