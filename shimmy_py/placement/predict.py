"""The speed a plan should run at, before loading it: a cost model over the
bytes each decoded token reads where they live, at the rates the machine
profile (profile.py; measured by shimmy_py/calibrate.py). `predict` is a pure
function of the plan, its tensor table and the profile; `predicted` reads
this machine's saved profile for it.

Per decoded token:
  host RAM   every host tensor read whole, the token embedding's row, and
             the chosen experts' slices (k of n per MoE layer), at the rate
             llama.cpp's kernels were measured to read weights at, per
             weight type (calibrate: F16, and Q8_0, Q6_K, Q4_K files);
  the file   what the plan's tiers expect to miss (tiers.py), at the rate
             streamed experts arrived at while a model decoded in a memory
             cgroup (calibrate, as root), scaled to this model's read size as
             8 readers' reads into the page cache scale; else at the rate 8
             readers read one matrix's expert slice into the page cache;
  overhead   a per-layer cost fitted by calibration (graph, threads, Python).
Prefill, per 512-token batch: every host weight once, every streamed expert
the page cache does not hold, and 2 FLOPs per active parameter per token at
the fitted matmul rate. An accelerator's part is not predicted (calibrate
does not measure one yet): such a prediction says it counts the host only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from ..gguf_io.tensors import read_table
from .plan import CPU, NOT_LOADED
from .profile import load_profile, per_threads

UBATCH = 512
FULL = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class Prediction:
    decode_tps: float
    prefill_tps: float
    host_bytes: int             # read from host RAM per decoded token
    file_bytes: float           # read from the file per decoded token (expected)
    seconds: dict               # per decoded token: ram, file, overhead
    host_only: bool             # an accelerator's part is not in the figures


def active_share(t, hparams) -> float:
    """The share of a tensor one token reads."""
    if t.role == "routed_experts" and hparams.n_expert:
        return max(hparams.n_expert_used, 1) / hparams.n_expert
    if t.role == "token_embd":
        return 1 / max(hparams.n_vocab, 1)
    return 1.0


def read_per_token(plan, table) -> tuple[int, int]:
    """(host bytes, active parameters) one decoded token reads."""
    by_type, active = read_by_type(plan, table)
    return sum(by_type.values()), active


def read_by_type(plan, table) -> tuple[dict[str, int], int]:
    """({weight type: host bytes}, active parameters) one decoded token reads."""
    params = {t.name: t.n_params for t in table.tensors}
    types = {t.name: t.ggml_type for t in table.tensors}
    host: dict[str, int] = {}
    active = 0.0
    for p in plan.tensors:
        if p.device == NOT_LOADED:
            continue
        share = active_share(p, table.hparams)
        active += params.get(p.name, 0) * share
        if p.device == CPU:
            kind = types.get(p.name, "F16")
            host[kind] = host.get(kind, 0) + int(p.bytes * share)
    return host, int(active)


def type_rate(kind: str, rates: dict, full: float) -> float:
    """The rate decode reads weights of `kind` at: F32, F16 and BF16 at the
    rate fitted on them (`full`); a quantized type at its own fitted rate, or
    at that of the fitted type nearest in bits per weight (the F16 rate where
    none was fitted)."""
    if kind in FULL or not rates:
        return full
    if kind in rates:
        return rates[kind]
    bits = _bits(kind)
    return rates[min(rates, key=lambda k: abs(_bits(k) - bits))] if bits else full


def _bits(kind: str) -> float:
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    except KeyError:
        return 0.0
    return 8 * size / block


def ram_seconds(by_type: dict[str, int], profile: dict, threads: int | None) -> float:
    """Seconds a decoded token spends reading its host bytes, type by type."""
    full = per_threads(profile, "decode_read_bps", threads)
    rates = per_threads(profile, "decode_type_bps", threads) if "decode_type_bps" in profile else {}
    return sum(b / type_rate(kind, rates, full) for kind, b in by_type.items())


def file_rate(profile: dict, size: int, readers: int = 8, key: str = "file_cached_read_bps") -> float:
    """Bytes per second for reads of `size` (by default into the page cache,
    as the streamer reads), log-interpolated between the measured sizes."""
    points = sorted((int(k.split("x")[0]), v) for k, v in profile[key].items()
                    if int(k.split("x")[1]) == readers)
    if size <= points[0][0]:
        return points[0][1]
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if size <= s1:
            f = (math.log(size) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return v0 + f * (v1 - v0)
    return points[-1][1]


def streamed_rate(profile: dict, read: int) -> float:
    """The rate streamed experts arrive at for reads of `read` bytes: the rate
    fitted while a model streamed (its reads of `file_streamed_read` bytes),
    scaled as reads of the two sizes into the page cache compare."""
    rate, fitted = profile["file_streamed_bps"], profile.get("file_streamed_read")
    if not fitted:
        return rate
    return rate * file_rate(profile, read) / file_rate(profile, fitted)


def predict(plan, table, profile: dict, threads: int | None = None) -> Prediction:
    bw = per_threads(profile, "ram_read_bps", threads)
    by_type, active = read_by_type(plan, table)
    host = sum(by_type.values())
    tiers = plan.tiers
    file_bytes, file_s, prefill_file_s = 0.0, 0.0, 0.0
    if tiers is not None and tiers.layers:
        read = max(t.slice_bytes // t.reads for t in tiers.layers)      # one request: one matrix's slice
        if "file_streamed_bps" in profile:      # fitted on a model streaming in a memory cgroup (calibrate)
            rate = streamed_rate(profile, read)
        else:                                     # one read a slice, into a full page cache where measured
            key = "file_pressured_read_bps" if "file_pressured_read_bps" in profile else "file_cached_read_bps"
            rate = file_rate(profile, read, key=key)
        file_bytes = tiers.file_bytes_per_token
        file_s = file_bytes / rate
        prefill_file_s = max(0, tiers.streamed_bytes - tiers.cache_bytes) / rate
    n_layer = table.hparams.n_layer
    overhead = per_threads(profile, "layer_overhead_s", threads) * n_layer
    seconds = {"ram": ram_seconds(by_type, profile, threads), "file": file_s, "overhead": overhead}
    decode = 1 / sum(seconds.values())
    host_weights = sum(p.bytes for p in plan.tensors if p.device == CPU)
    flops = per_threads(profile, "prefill_flops", threads)
    prefill_s = host_weights / bw + prefill_file_s + 2 * active * UBATCH / flops
    return Prediction(decode, UBATCH / prefill_s, host, file_bytes, seconds, bool(plan.accelerators))


def predicted(plan, source, threads: int | None = None) -> Prediction | None:
    """predict() with this machine's saved profile, or None when it was never
    calibrated; `source`: the model's path, or its header already read."""
    profile = load_profile()
    return predict(plan, read_table(source), profile, threads) if profile is not None else None
