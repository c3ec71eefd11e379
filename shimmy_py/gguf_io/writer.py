"""Minimal GGUF v3 writer: typed metadata, raw metadata copied from another file,
tensors produced one at a time or, for shape-only files, left as sparse holes.

`gguf.GGUFWriter` would re-encode the 100k-entry tokenizer arrays element by
element; copying their raw bytes from the vocabulary file is exact and fast.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Callable

from gguf import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

from .format import tensor_nbytes

_SCALAR_FMT = {
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
}


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def encode_kv(key: str, value: Any, vtype: GGUFValueType, elem_type: GGUFValueType | None = None) -> bytes:
    """Encodes one metadata entry (key, type, value) as GGUF bytes."""
    out = _string(key) + struct.pack("<I", vtype)
    if vtype == GGUFValueType.STRING:
        return out + _string(value)
    if vtype == GGUFValueType.ARRAY:
        assert elem_type is not None
        out += struct.pack("<IQ", elem_type, len(value))
        if elem_type == GGUFValueType.STRING:
            return out + b"".join(_string(v) for v in value)
        return out + b"".join(struct.pack(_SCALAR_FMT[elem_type], v) for v in value)
    return out + struct.pack(_SCALAR_FMT[vtype], value)


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order (ne0 first)
    ggml_type: GGMLQuantizationType
    produce: Callable[[], bytes] | None  # called once at write time; None: a hole

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.shape)


class GGUFBuilder:
    """Collects metadata and tensors, then writes one GGUF file."""

    def __init__(self, alignment: int = GGUF_DEFAULT_ALIGNMENT):
        self.alignment = alignment
        self._kv: list[bytes] = []
        self._keys: set[str] = set()
        self._tensors: list[_Tensor] = []

    def add(self, key: str, value: Any, vtype: GGUFValueType, elem_type: GGUFValueType | None = None) -> None:
        self._add_raw(key, encode_kv(key, value, vtype, elem_type))

    def add_raw(self, key: str, raw: bytes) -> None:
        """Adds an entry already encoded (as read by `GGUFHeader.raw_kv`)."""
        self._add_raw(key, raw)

    def _add_raw(self, key: str, raw: bytes) -> None:
        if key in self._keys:
            raise ValueError(f"duplicate metadata key {key!r}")
        self._keys.add(key)
        self._kv.append(raw)

    def add_tensor(self, name: str, shape: tuple[int, ...], ggml_type: GGMLQuantizationType,
                   produce: Callable[[], bytes] | None) -> None:
        """Adds a tensor of ggml `shape`. `produce` returns its bytes when the file
        is written (so a large model never sits in memory whole); None leaves a hole."""
        self._tensors.append(_Tensor(name, tuple(shape), ggml_type, produce))

    def write(self, path: str | os.PathLike) -> int:
        """Writes the file (atomically, via a temporary name); returns its size."""
        path = str(path)
        offsets, rel = [], 0
        for t in self._tensors:
            offsets.append(rel)
            rel += -(-t.nbytes // self.alignment) * self.alignment
        head = struct.pack("<IIQQ", GGUF_MAGIC, 3, len(self._tensors), len(self._kv)) + b"".join(self._kv)
        for t, off in zip(self._tensors, offsets):
            head += _string(t.name) + struct.pack("<I", len(t.shape))
            head += b"".join(struct.pack("<Q", d) for d in t.shape)
            head += struct.pack("<IQ", t.ggml_type, off)
        data_start = -(-len(head) // self.alignment) * self.alignment
        tmp = path + ".partial"
        with open(tmp, "wb") as f:
            f.write(head)
            for t, off in zip(self._tensors, offsets):
                if t.produce is not None:
                    data = t.produce()
                    if len(data) != t.nbytes:
                        raise ValueError(f"tensor {t.name}: {len(data)} bytes produced, {t.nbytes} expected")
                    f.seek(data_start + off)
                    f.write(data)
            f.truncate(data_start + rel)
        os.replace(tmp, path)
        return data_start + rel
