"""Random weights for the synthetic models: seeded, scaled so that every
layer's outputs keep unit variance (norms near 1, a recurrent decay rate
negative), in the tensor's own type (F32, F16, or quantized by gguf's own
quantizer). Large tensors are slices of one random pool, so that a multi-GB
model is written at disk speed instead of RNG speed. `fixed`: a tensor whose
values were chosen (behaviours.py), in the same types."""
from __future__ import annotations

from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize


class RandomWeights:
    """One seeded stream of normal values, drawn in the order tensors are written."""
    POOL = 1 << 24

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self._pool: np.ndarray | None = None

    def normal(self, n: int) -> np.ndarray:
        if n <= self.POOL:
            return self.rng.standard_normal(n, dtype=np.float32)
        if self._pool is None:
            self._pool = self.rng.standard_normal(2 * self.POOL, dtype=np.float32)
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.POOL):
            k = min(self.POOL, n - start)
            at = int(self.rng.integers(0, self.POOL))
            out[start:start + k] = self._pool[at:at + k]
        return out


def producer(w: RandomWeights, name: str, shape: tuple[int, ...],
             ttype: GGMLQuantizationType) -> Callable[[], bytes]:
    """The bytes of tensor `name`, made when the writer asks for them."""
    n = int(np.prod(shape))
    rows = tuple(reversed(shape))

    def produce() -> bytes:
        x = w.normal(n)
        if name.endswith("norm.weight"):
            x = 1.0 + 0.1 * x               # norms near 1
        elif name.endswith(".ssm_a"):
            x = -np.exp(0.5 * x)             # a recurrent decay rate: negative, as -exp(A_log)
        elif name != "token_embd.weight":
            x *= 1.0 / np.sqrt(shape[0])     # unit-variance outputs
        return encode(x.reshape(rows), ttype)
    return produce


def fixed(values: np.ndarray, shape: tuple[int, ...], ttype: GGMLQuantizationType) -> Callable[[], bytes]:
    """The bytes of a tensor whose values were chosen (numpy's shape: ggml's reversed)."""
    rows = tuple(reversed(shape))
    if values.shape != rows:
        raise ValueError(f"values of shape {values.shape} for a tensor of ggml shape {shape}")
    return lambda: encode(np.ascontiguousarray(values, dtype=np.float32), ttype)


def encode(x: np.ndarray, ttype: GGMLQuantizationType) -> bytes:
    if ttype == GGMLQuantizationType.F32:
        return x.tobytes()
    if ttype == GGMLQuantizationType.F16:
        return x.astype(np.float16).tobytes()
    return quantize(x, ttype).tobytes()
