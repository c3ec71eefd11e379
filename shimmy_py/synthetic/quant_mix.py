"""The quantization mix llama.cpp's quantizer chooses, per tensor, without
quantizing anything: `llama-quantize --dry-run` on a shape-only file prints
each tensor's target type (Q4_K_M keeps some at Q6_K, falls back to Q8_0
where a row is not a whole number of K blocks, leaves norms in F32). A
shape-only file in that mix is then written for planning; `quantize` runs
the quantizer itself on a file with weights."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from gguf import GGMLQuantizationType

from ..errors import ShimmyError
from ..gguf_io.reader import read_header
from ..gguf_io.writer import GGUFBuilder

_ROW = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[.*\], type =\s+(\w+),.*?(?:\((\w+)\))?\s*$")
FTYPES = {"Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "Q8_0": 7, "Q4_K_S": 14, "MXFP4_MOE": 38}


def quantizer_types(path: str | os.PathLike, ftype: str = "Q4_K_M") -> dict[str, GGMLQuantizationType]:
    """Tensor name -> the type llama-quantize would give it (its --dry-run)."""
    from ..native.install import tool
    proc = subprocess.run([str(tool("llama-quantize")), "--dry-run", str(path), ftype], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise ShimmyError(f"llama-quantize --dry-run {path} {ftype} failed: {proc.stderr.strip()[-300:]}")
    types = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        m = _ROW.match(line.strip())
        if m:
            types[m.group(1)] = GGMLQuantizationType[(m.group(3) or m.group(2)).upper()]
    if not types:
        raise ShimmyError(f"llama-quantize --dry-run {path} {ftype} printed no tensor types")
    return types


def write_shape_only(src: str | os.PathLike, out: str | os.PathLike, ftype: str = "Q4_K_M") -> Path:
    """A shape-only copy of `src` with each tensor typed as the quantizer would type it."""
    from gguf import GGUFValueType

    from ..gguf_io.format import GENERAL
    types = quantizer_types(src, ftype)
    h = read_header(src)
    b = GGUFBuilder(h.alignment)
    for name in h.metadata:
        if name != GENERAL.FILE_TYPE:
            b.add_raw(name, h.raw_kv(name))
    b.add(GENERAL.FILE_TYPE, FTYPES.get(ftype, 0), GGUFValueType.UINT32)
    for t in h.tensors:
        b.add_tensor(t.name, t.shape, types.get(t.name, t.ggml_type), None)
    out = Path(out)
    b.write(out)
    return out


def quantize(src: str | os.PathLike, out: str | os.PathLike, ftype: str) -> Path:
    """`llama-quantize src out ftype`: the built quantizer, on real bytes."""
    from ..native.install import tool
    proc = subprocess.run([str(tool("llama-quantize")), str(src), str(out), ftype], capture_output=True,
                          text=True, timeout=3600)
    if proc.returncode != 0:
        Path(out).unlink(missing_ok=True)
        raise ShimmyError(f"llama-quantize {ftype} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return Path(out)
