"""Pictures of expert routing as PNG files, written with zlib and NumPy alone
(no plotting library to install): a heatmap of layer x expert counts and a
strip of which expert won each token in each layer. Rows are MoE layers, top
to bottom; each value is a square of `cell` pixels."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# viridis at nine stops: dark blue (rare) to yellow (often)
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)
MAX_STRIP_TOKENS = 4096


def _png(rgb: np.ndarray, path: str | Path) -> tuple[int, int]:
    """Writes an (H, W, 3) uint8 image; returns (width, height)."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))    # filter 0 on every row
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return w, h


def _scale(values: np.ndarray, cell: int) -> np.ndarray:
    return np.repeat(np.repeat(values, cell, axis=0), cell, axis=1)


def viridis(x: np.ndarray) -> np.ndarray:
    """Colours of values in [0, 1]."""
    pos = np.clip(x, 0, 1) * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).round().astype(np.uint8)


def expert_colours(n: int) -> np.ndarray:
    """n distinct colours (hues spread by the golden ratio)."""
    hue = (np.arange(n) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + hue[:, None] * 6) % 6
    rgb = 1 - 0.75 * np.clip(np.minimum(k, 4 - k), 0, 1)             # HSV with s=0.75, v=1
    return (rgb * 255).round().astype(np.uint8)


def heatmap_png(counts: np.ndarray, path: str | Path, cell: int = 8) -> tuple[int, int]:
    """Layer x expert counts, each layer's row scaled to its own maximum."""
    c = counts.astype(np.float64)
    peak = c.max(axis=1, keepdims=True)
    norm = np.divide(c, peak, out=np.zeros_like(c), where=peak > 0)
    return _png(_scale(viridis(norm), cell), path)


def strip_png(winners: np.ndarray, n_experts: int, path: str | Path, cell: int = 6) -> tuple[int, int]:
    """winners (tokens, layers) drawn as layers (rows) x tokens (columns), the
    first MAX_STRIP_TOKENS tokens."""
    w = winners[:MAX_STRIP_TOKENS].T
    return _png(_scale(expert_colours(n_experts)[w], cell), path)
