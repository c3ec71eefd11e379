"""`shimmy-py calibrate`: what this machine reads and computes per second,
measured, saved as a machine profile (a small JSON in the cache folder)
that `plan --predict`, `bench` and the server read (predict.py).

- RAM read bandwidth per thread count (NumPy sums over 256 MiB, threads
  reading their own part: the sums release the GIL);
- the model file's read bandwidth by request size (4 KiB .. 8 MiB) and
  concurrency (1, 4, 8 readers), cold: O_DIRECT, random aligned offsets;
- the per-layer overhead of a decoded token and the CPU's matmul rate in
  prefill, fitted on a small synthetic model decoded through shimmy-py
  itself (what bytes at RAM bandwidth do not explain).
An accelerator's bandwidth is not measured yet: a plan with one predicts
its host and file parts only, and says so.
"""
from __future__ import annotations

import json
import mmap
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import PlacementError
from ..native.install import cache_dir

SIZES = (4096, 131072, 1 << 20, 8 << 20)
READERS = (1, 4, 8)
VERSION = 1


def profile_path() -> Path:
    return cache_dir() / "machine.json"


def load_profile(path: Path | None = None) -> dict | None:
    """The saved machine profile, or None when this machine was never calibrated."""
    path = path or profile_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def ram_bandwidth(threads: int, mib: int = 256, rounds: int = 3) -> float:
    """Bytes per second `threads` threads read from RAM, each summing its share."""
    data = np.ones(mib << 17, dtype=np.float64)          # mib MiB
    parts = np.array_split(data, threads)
    best = 0.0
    for _ in range(rounds):
        workers = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - t))
    return best


def file_bandwidth(path: str, size: int, readers: int, seconds: float = 0.6) -> float:
    """Bytes per second read from `path` in requests of `size` at random
    aligned offsets by `readers` threads, past the page cache (O_DIRECT)."""
    total = os.path.getsize(path)
    if total < size * 4:
        raise PlacementError(f"{path} is too small to measure reads of {size} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as e:
        raise PlacementError(f"cannot read {path} with O_DIRECT ({e}): calibrate on a file system that allows it")
    done = [0] * readers
    stop = time.perf_counter() + seconds

    def read(i: int) -> None:
        buf = mmap.mmap(-1, size)                           # page-aligned, as O_DIRECT wants
        rng = random.Random(i)
        while time.perf_counter() < stop:
            offset = rng.randrange(0, total - size) // 4096 * 4096
            done[i] += os.preadv(fd, [buf], offset)
        buf.close()

    try:
        workers = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(done) / (time.perf_counter() - t)
    finally:
        os.close(fd)


def fit_compute(threads: int, ram_bps: float) -> dict:
    """Per-layer overhead of a decoded token and the prefill matmul rate, from
    the bench preset (1.5 GB, written to a temporary folder) run through
    shimmy-py's own bench: its decode time less its bytes at RAM bandwidth,
    per layer; its prompt's FLOPs per second."""
    from ..bench import bench_one
    from ..gguf_io.tensors import read_table
    from ..synthetic.synth import write
    from .machine import make_plan
    from .options import PlacementOptions
    from .predict import UBATCH, read_per_token
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        path = Path(tmp) / "calibrate.gguf"
        write(path, preset="bench")
        table = read_table(path)
        host, active = read_per_token(make_plan(path, PlacementOptions(n_ctx=UBATCH + 48)), table)
        r = bench_one(str(path), "gpu", UBATCH, 32, 2, threads)
    overhead = max(0.0, 1 / r.decode_tps - host / ram_bps) / table.hparams.n_layer
    return {"layer_overhead_s": overhead, "prefill_flops": 2 * active * r.prefill_tps}


def calibrate(model: str | None, threads: int, out=print) -> dict:
    """Measures everything above and saves it; `model`: the file whose reads
    are measured (default: a 1 GiB scratch file written for it)."""
    profile: dict = {"version": VERSION, "made": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": threads}
    profile["ram_read_bps"] = {str(t): ram_bandwidth(t) for t in sorted({1, threads})}
    out("RAM read: " + ", ".join(f"{t} thread{'s' if t != '1' else ''} {v / 1e9:.1f} GB/s"
                                  for t, v in profile["ram_read_bps"].items()))
    scratch = None
    if model is None:
        scratch = tempfile.NamedTemporaryFile(dir=cache_dir(), suffix=".calibrate", delete=False)
        with scratch:
            chunk = os.urandom(1 << 20)
            for _ in range(1024):
                scratch.write(chunk)
        model = scratch.name
    try:
        reads = {}
        for size in SIZES:
            for readers in READERS:
                reads[f"{size}x{readers}"] = file_bandwidth(model, size, readers)
            out(f"file reads of {size // 1024} KiB: " + ", ".join(
                f"{r} reader{'s' if r > 1 else ''} {reads[f'{size}x{r}'] / 1e9:.2f} GB/s" for r in READERS))
        profile["file_read_bps"] = reads
        profile["file"] = str(model) if scratch is None else "a scratch file"
    finally:
        if scratch is not None:
            os.unlink(scratch.name)
    profile.update(fit_compute(threads, profile["ram_read_bps"][str(threads)]))
    out(f"per-layer overhead {profile['layer_overhead_s'] * 1e6:.0f} us a token; prefill "
        f"{profile['prefill_flops'] / 1e9:.1f} GFLOP/s")
    path = profile_path()
    path.write_text(json.dumps(profile, indent=1))
    out(f"saved {path}")
    return profile
