"""`shimmy-py calibrate`: what this machine reads and computes per second,
measured, saved as a machine profile (placement/profile.py: a small JSON in
the cache folder) that `plan --predict`, `bench` and the server read
(placement/predict.py). It runs models, so it sits above the layers, beside
bench.py, whose runs it fits on.

- RAM read bandwidth per thread count (NumPy sums over 256 MiB, threads
  reading their own part: the sums release the GIL);
- the file's read bandwidth by request size (4 KiB .. 8 MiB) and readers
  (1, 4, 8), cold (O_DIRECT, random aligned offsets); by 8 readers into the
  page cache, as the expert streamer reads; and, as root, into the full page
  cache of a memory cgroup (pressured_reads);
- per thread count, the rate llama.cpp's kernels read weights at in decode,
  the per-layer overhead of a decoded token and the prefill matmul rate,
  fitted on two synthetic models run through shimmy-py itself (fit_compute);
  and the decode rate of each type `plan` proposes (Q8_0, Q6_K, Q4_K), on the
  stream preset quantized to it (fit_types);
- as root, the rate streamed experts arrive at while a model decodes in a
  memory cgroup (fit_streaming).
The synthetic models (the tiny and stream presets, and WIDE) are written
once, in a temporary folder, for every fit. An accelerator's bandwidth is not
measured yet: a plan with one predicts its host and file parts only, and
says so.
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

from .errors import PlacementError
from .native.install import cache_dir
from .placement.profile import VERSION, profile_path
from .synthetic.synth import Preset, moe_shape

SIZES = (4096, 131072, 1 << 20, 8 << 20)
READERS = (1, 4, 8)
# the decode fit's weight-bound model: real MoE models' width (DeepSeekMoE 16B's 2048, 1408-wide experts) in
# 3 layers of 16 experts, 1.5 GiB in F16; no benchmark predicts it
WIDE = Preset("wide", moe_shape(2048, 3, 16, 5472, 1408, 16, 4, 1))


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


def file_bandwidth(path: str, size: int, readers: int, seconds: float = 0.6, direct: bool = True,
                   drop: bool = True) -> float:
    """Bytes per second read from `path` in requests of `size` at random
    aligned offsets by `readers` threads: past the page cache (O_DIRECT), or
    into it as the expert streamer's readers read (the file's pages dropped
    from the cache first, so that what is read comes from the disk)."""
    total = os.path.getsize(path)
    if total < size * 4:
        raise PlacementError(f"{path} is too small to measure reads of {size} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    except OSError as e:
        raise PlacementError(f"cannot read {path} with O_DIRECT ({e}): calibrate on a file system that allows it")
    if not direct and drop:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
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


def pressured_reads(path: str) -> dict | None:
    """The rate 8 readers read slices into the page cache of a memory cgroup a
    quarter of the file's size, where each page read in makes the kernel
    reclaim another (what a streaming model meets); None without root."""
    import sys

    from .procs import MemoryLimit
    try:
        cg = MemoryLimit(max(os.path.getsize(path) // 4, 128 << 20), name="shimmy_py_calibrate")
    except RuntimeError:
        return None
    out = {}
    with cg:
        for size in (1 << 20, 8 << 20):
            code = (f"from shimmy_py.calibrate import file_bandwidth; "
                    f"file_bandwidth({path!r}, {size}, 8, seconds=1.0, direct=False); "      # fills the group first
                    f"print(file_bandwidth({path!r}, {size}, 8, seconds=1.5, direct=False, drop=False))")
            done, _ = cg.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent)
            if done.returncode == 0:
                out[f"{size}x8"] = float(done.stdout.strip().splitlines()[-1])
    return out or None


def fit_streaming(model, threads: int, decode_bps: float, overhead: float) -> tuple[float, int] | None:
    """(the rate streamed experts arrive at while a model decodes, the size of
    its reads: one matrix's expert slice), fitted on
    `model` (write_models' stream preset, 0.7 GB) decoding in a 300 MiB memory
    cgroup through shimmy-py's bench (the page cache dropped first; random
    tokens fed, as the plan's uniform routing assumes): its decode time less
    its host bytes at the kernels' rate and its per-layer overhead, against
    the bytes its streamer read a decoded token. None without root."""
    import sys

    from .procs import MemoryLimit
    path, table, host, _ = model
    try:
        cg = MemoryLimit(300 << 20, name="shimmy_py_calibrate")
    except RuntimeError:
        return None
    with cg:
        done, _ = cg.run([sys.executable, "-m", "shimmy_py", "bench", str(path), "-p", "8", "-n", "32", "-r", "1",
                          "--threads", str(threads), "--feed", "random", "--json"],
                         cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        return None
    r = json.loads(done.stdout)[0]
    per_token = (r.get("streamed") or {}).get("decode", {}).get("file_bytes_per_token", 0)   # decode's own
    file_s = 1 / r["decode_tps"] - host / decode_bps - table.hparams.n_layer * overhead
    read = next(t.nbytes // t.shape[2] for t in table.tensors if t.role == "routed_experts")
    return (per_token / file_s, read) if per_token and file_s > 0 else None


def write_models(folder: Path) -> dict:
    """The tiny and stream presets and WIDE written into `folder`, each as (path, tensor
    table, host bytes a decoded token reads, active parameters)."""
    from .gguf_io.tensors import read_table
    from .placement.machine import make_plan
    from .placement.options import PlacementOptions
    from .placement.predict import UBATCH, read_per_token
    from .synthetic.synth import write
    models = {}
    for name, preset in (("tiny", "tiny"), ("stream", "stream"), ("wide", WIDE)):
        path = folder / f"{name}.gguf"
        write(path, preset=preset)
        table = read_table(path)
        models[name] = (path, table, *read_per_token(make_plan(path, PlacementOptions(n_ctx=UBATCH + 48)), table))
    return models


TYPES = ("Q8_0", "Q6_K", "Q4_K")         # the types `plan` proposes (placement/retype.py PROPOSED)


def write_typed(folder: Path, stream: Path) -> dict:
    """The stream preset with every weight llama-quantize may change at each of
    TYPES (by shimmy-py quantize): {type: (path, tensor table)}."""
    from .gguf_io.tensors import read_table
    from .placement.retype import Retyping
    from .quantize import quantize_file
    out = {}
    for kind in TYPES:
        path = folder / f"stream-{kind.lower()}.gguf"
        quantize_file(stream, path, Retyping(kind, experts_only=False))
        out[kind] = (path, read_table(path))
    return out


def fit_compute(models: dict, thread_counts, typed: dict | None = None) -> dict:
    """Per thread count: the rate llama.cpp's kernels read weights at in
    decode, a per-layer overhead, and the prefill matmul rate, fitted on
    write_models' two models run through shimmy-py's own bench (read from the
    page cache, just written): the tiny preset, whose decode is mostly
    overhead, and WIDE (1.5 GiB at real models' width), mostly weights; neither is a
    model the benchmarks predict. Two decode times, two unknowns:
    t = bytes / rate + layers * overhead."""
    from .bench import bench_one
    from .placement.options import PlacementOptions
    from .placement.predict import UBATCH
    out: dict = {"decode_read_bps": {}, "layer_overhead_s": {}, "prefill_flops": {}}
    for threads in thread_counts:
        runs = {}
        for preset in ("tiny", "wide"):
            path, table, host, active = models[preset]
            r = bench_one(str(path), "gpu", UBATCH, 32, 2, threads, base=PlacementOptions(ram_budget="1TiB"))
            runs[preset] = (1 / r.decode_tps, host, table.hparams.n_layer, active, r.prefill_tps)
        (t1, b1, l1, _, _), (t2, b2, l2, active, prefill_tps) = runs["tiny"], runs["wide"]
        rate, overhead = solve_decode((t1, b1, l1), (t2, b2, l2))
        out["decode_read_bps"][str(threads)] = rate
        out["layer_overhead_s"][str(threads)] = overhead
        out["prefill_flops"][str(threads)] = 2 * active * prefill_tps
        if typed:
            path, table = models["stream"][:2]
            out.setdefault("decode_type_bps", {})[str(threads)] = fit_types(typed, (path, table), threads, rate,
                                                                             overhead)
    return out


def fit_types(typed: dict, base: tuple, threads: int, full_rate: float, overhead: float) -> dict:
    """{type: the rate decode reads weights of that type at}, each measured on
    the stream preset quantized to it (every weight llama-quantize may
    change) against the same preset at F16 (`base`: its path and table): the
    time a token gains or loses, plus what the changed tensors took at F16 on
    that preset, is what their quantized bytes take. A type's rate is its
    speed relative to F16 on the same preset, applied to `full_rate` (F16's,
    fitted on WIDE), since narrow matrices read slower per byte in every type,
    and at most F16's: a quantized weight is fewer bytes with more work for
    each (where the time a type gains is within the noise, it would read faster)."""
    from .bench import bench_one
    from .placement.machine import make_plan
    from .placement.options import PlacementOptions
    from .placement.predict import FULL, UBATCH, read_by_type

    def per_token(path, table):
        r = bench_one(str(path), "gpu", 8, 64, 3, threads, base=PlacementOptions(ram_budget="1TiB"))
        return 1 / r.decode_tps, read_by_type(make_plan(path, PlacementOptions(n_ctx=UBATCH + 48)), table)[0]

    t16, by16 = per_token(*base)
    weights_s = t16 - base[1].hparams.n_layer * overhead
    if weights_s <= 0:
        return {}
    here16 = sum(by16.values()) / weights_s                 # F16's rate on this preset
    rates = {}
    for kind, (path, table) in typed.items():
        t, by_type = per_token(path, table)
        quantized = sum(b for k, b in by_type.items() if k not in FULL)
        replaced = sum(by16.values()) - sum(b for k, b in by_type.items() if k in FULL)   # their F16 bytes
        took = t - t16 + replaced / here16
        if took > 0 and quantized:      # no faster a byte than F16: fewer bytes, more work for each
            rates[kind] = min(full_rate, quantized / took * full_rate / here16)
    return rates


def solve_decode(small: tuple, large: tuple) -> tuple[float, float]:
    """(read rate, per-layer overhead) from two runs' (seconds a token, bytes
    a token, layers): t = bytes / rate + layers * overhead, solved; where
    noise makes either negative, the small model's time is all overhead."""
    (t1, b1, l1), (t2, b2, l2) = small, large
    det = b1 * l2 - b2 * l1
    inv_rate = (t1 * l2 - t2 * l1) / det if det else 0.0
    overhead = (b1 * t2 - b2 * t1) / det if det else t1 / l1
    if inv_rate <= 0 or overhead < 0:
        overhead = max(0.0, t1 / l1)
        inv_rate = max(t2 - l2 * overhead, 1e-9) / b2
    return 1 / inv_rate, overhead


def calibrate(model: str | None, threads: int, out=print) -> dict:
    """Measures everything above and saves it; `model`: the file whose reads
    are measured (default: a 1 GiB scratch file written for it)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
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
        reads, buffered = {}, {}
        for size in SIZES:
            for readers in READERS:
                reads[f"{size}x{readers}"] = file_bandwidth(model, size, readers)
            out(f"file reads of {size // 1024} KiB: " + ", ".join(
                f"{r} reader{'s' if r > 1 else ''} {reads[f'{size}x{r}'] / 1e9:.2f} GB/s" for r in READERS))
            buffered[f"{size}x8"] = file_bandwidth(model, size, 8, direct=False)
        out("into the page cache, 8 readers (as the expert streamer reads): " + ", ".join(
            f"{size // 1024} KiB {buffered[f'{size}x8'] / 1e9:.2f} GB/s" for size in SIZES))
        profile["file_read_bps"], profile["file_cached_read_bps"] = reads, buffered
        pressured = pressured_reads(model)
        if pressured:
            profile["file_pressured_read_bps"] = pressured
            out("into the page cache of a memory cgroup a quarter of the file's size, 8 readers (a streaming "
                "model's case): " + ", ".join(f"{int(k.split('x')[0]) // 1024} KiB {v / 1e9:.2f} GB/s"
                                              for k, v in pressured.items()))
        else:
            out("reads under memory pressure not measured: that needs root (a memory cgroup)")
        profile["file"] = str(model) if scratch is None else "a scratch file"
    finally:
        if scratch is not None:
            os.unlink(scratch.name)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        models = write_models(Path(tmp))
        typed = write_typed(Path(tmp), models["stream"][0])
        profile.update(fit_compute(models, sorted({1, threads}), typed))
        for t in profile["decode_read_bps"]:
            kinds = profile.get("decode_type_bps", {}).get(t, {})
            out(f"{t} thread{'s' if t != '1' else ''}: decode reads weights at "
                f"{profile['decode_read_bps'][t] / 1e9:.1f} GB/s"
                + "".join(f", {k} at {v / 1e9:.1f}" for k, v in kinds.items())
                + f", plus {profile['layer_overhead_s'][t] * 1e6:.0f} us a layer; prefill "
                  f"{profile['prefill_flops'][t] / 1e9:.1f} GFLOP/s")
        streamed = fit_streaming(models["stream"], threads, profile["decode_read_bps"][str(threads)],
                                 profile["layer_overhead_s"][str(threads)])
    if streamed:
        profile["file_streamed_bps"], profile["file_streamed_read"] = streamed
        out(f"streamed experts arrive at {streamed[0] / 1e9:.2f} GB/s in reads of {streamed[1] // 1024} KiB while a "
            "model decodes (fitted in a memory cgroup)")
    path = profile_path()
    path.write_text(json.dumps(profile, indent=1))
    out(f"saved {path}")
    return profile
