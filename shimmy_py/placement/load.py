"""From user options to a Plan on this machine's devices, from a Plan to
llama_model_params, and back from llama.cpp's log to a report of where the
weights actually went.

The planner (planner.py) is pure; this module feeds it: RPC servers
registered, device capacities read, `--target-vram` for a hypothetical card.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Sequence

from ..native import backend as _backend

from ..native import log as _log
from ..native.owned import ModelHandle
from ..native.runtime import lib
from .devices import host_memory
from ..errors import PlacementError
from ..gguf_io.reader import read_header
from .planner import CPU, DeviceSpec, Plan, PlanRequest, parse_override_arg, plan
from ..gguf_io.tensors import read_table

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}
HYPOTHETICAL = "GPU"
logger = logging.getLogger("shimmy_py")

# enum llama_load_mode
LOAD_MODES = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3}


def parse_size(value: int | str) -> int:
    """Bytes from 8589934592, "8GiB", "8 GB", "512MiB"."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise PlacementError(f"cannot read size {value!r}: use e.g. 8GiB, 24GB or 512MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class PlacementOptions:
    """The placement flags of `plan`, `generate` and `serve`, as one record."""
    cpu_moe: bool = False
    n_cpu_moe: int | None = None
    fit: bool = False
    vram_budget: int | str | None = None
    overrides: tuple = ()            # "PAT=BUF[,PAT=BUF]" strings or (pattern, buffer type) pairs
    rpc: tuple = ()                  # "HOST:PORT" strings
    target_vram: int | str | None = None
    n_ctx: int = 4096

    def request(self) -> PlanRequest:
        chosen = [name for name, on in (("--cpu-moe", self.cpu_moe), ("--n-cpu-moe", self.n_cpu_moe is not None),
                                        ("--fit", self.fit)) if on]
        if len(chosen) > 1:
            raise PlacementError(f"choose one strategy, not {' and '.join(chosen)}")
        if self.vram_budget is not None and not self.fit:
            raise PlacementError("--vram-budget is a budget for --fit; add --fit")
        strategy = "cpu-moe" if self.cpu_moe else "n-cpu-moe" if self.n_cpu_moe is not None \
            else "fit" if self.fit else "gpu"
        pairs = []
        for item in self.overrides:
            pairs += parse_override_arg(item) if isinstance(item, str) else [tuple(item)]
        budget = parse_size(self.vram_budget) if self.vram_budget is not None else None
        return PlanRequest(strategy, self.n_cpu_moe or 0, budget, tuple(pairs), self.n_ctx)


def device_specs(rpc=(), target_vram=None) -> list[DeviceSpec]:
    """The CPU (capacity: available RAM) and the first accelerator (its free
    memory), or a hypothetical accelerator of `target_vram` bytes."""
    if rpc:
        _backend.add_rpc_servers(rpc)
    available, _ = host_memory()
    specs = [DeviceSpec(CPU, "cpu", available, CPU)]
    if target_vram is not None:
        return specs + [DeviceSpec(HYPOTHETICAL, "accelerator", parse_size(target_vram), HYPOTHETICAL)]
    for d in _backend.list_devices():
        if d.kind == "accelerator":
            specs.append(DeviceSpec(d.name, "accelerator", d.free_bytes, d.buffer_type))
            break
    return specs


def make_plan(path, options: PlacementOptions = PlacementOptions()) -> Plan:
    """Plans the model at `path` (or its GGUFHeader) on this machine's devices."""
    request = options.request()
    return plan(read_table(path), device_specs(options.rpc, options.target_vram), request)


def device_of_buffer(buffer_name: str) -> str:
    """llama.cpp buffer name -> device: CPU_Mapped, CPU_REPACK, CUDA_Host are host memory."""
    if buffer_name.startswith("CPU") or buffer_name.endswith("_Host"):
        return CPU
    return buffer_name.split("[", 1)[0]


_BUFFER_LINE = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([0-9.]+) MiB")
_ANY_BUFFER_LINE = re.compile(r"\s(\S+)\s+(?:model|KV|compute|output) buffer size =\s+([0-9.]+) MiB")
_OVERRIDE_LINE = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")


@dataclass(frozen=True)
class PlacementReport:
    """llama.cpp's own account of the weights beside the Plan's."""
    planned: dict[str, int]
    actual: dict[str, int]                 # device -> bytes, from llama.cpp's buffer sizes
    buffers: dict[str, float]              # llama.cpp buffer name -> MiB as logged
    overridden: dict[str, str]             # tensor -> buffer type, as llama.cpp logged
    allocated: dict[str, int]              # device -> weights + KV + compute + output buffers
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{'device':<10} {'planned MiB':>12} {'llama.cpp MiB':>14}"]
        for dev in sorted(set(self.planned) | set(self.actual)):
            lines.append(f"{dev:<10} {self.planned.get(dev, 0) / 2**20:12.2f} {self.actual.get(dev, 0) / 2**20:14.2f}")
        lines += [f"problem: {p}" for p in self.problems] or ["llama.cpp placed the weights as planned"]
        return "\n".join(lines)


def build_report(plan_: Plan, log_lines: list[str], check_sizes: bool = True) -> PlacementReport:
    """Compares the Plan with the buffer sizes and overrides llama.cpp logged."""
    buffers, overridden, allocated = {}, {}, {}
    for line in log_lines:
        if m := _BUFFER_LINE.search(line):
            buffers[m.group(1)] = float(m.group(2))
        elif m := _OVERRIDE_LINE.search(line):
            overridden[m.group(1)] = m.group(2)
        if m := _ANY_BUFFER_LINE.search(line):
            dev = device_of_buffer(m.group(1))
            allocated[dev] = allocated.get(dev, 0) + round(float(m.group(2)) * 2**20)
    actual: dict[str, int] = {}
    mapped = set()  # a mapped buffer covers a file range, other devices' tensors included
    for name, mib in buffers.items():
        dev = device_of_buffer(name)
        actual[dev] = actual.get(dev, 0) + round(mib * 2**20)
        if "Mapped" in name:
            mapped.add(dev)
    planned = {d: b for d, b in plan_.weights_by_device().items() if b}
    problems = []
    for dev in sorted(set(planned) | set(actual)) if check_sizes else ():
        n_tensors = sum(1 for t in plan_.tensors if t.device == dev)
        slack = 0.01 * 2**20 * len(buffers) + 512 * n_tensors  # log rounding + alignment padding
        short = planned.get(dev, 0) - actual.get(dev, 0)
        if short > slack or (dev not in mapped and -short > slack):
            problems.append(f"{dev}: planned {planned.get(dev, 0)} bytes, llama.cpp holds {actual.get(dev, 0)}")
    if plan_.accelerator:
        expected = {t.name for t in plan_.tensors if t.device == CPU and t.role != "token_embd"}
        moved = {n for n, b in overridden.items() if device_of_buffer(b) == CPU}
        if moved != expected:
            problems.append(f"llama.cpp moved to the CPU {sorted(moved - expected)[:5]} unplanned, "
                            f"and missed {sorted(expected - moved)[:5]}")
    return PlacementReport(planned, actual, buffers, overridden, allocated, problems)


def placement_params(plan: Plan, params, rpc=()) -> tuple:
    """Sets n_gpu_layers, devices and the override array of llama_model_params
    from `plan`; returns what must stay alive as long as the model."""
    if plan.accelerator == HYPOTHETICAL:
        raise PlacementError("this plan is for a hypothetical accelerator (--target-vram): "
                             "it can be printed, not loaded")
    for notice in plan.notices:
        logger.warning(notice)
    if rpc:
        _backend.add_rpc_servers(rpc)
    if plan.accelerator is None:
        params.n_gpu_layers = 0
        return ()
    devices = _backend.DeviceList([plan.accelerator])
    table = _backend.OverrideArray(list(plan.overrides))
    params.n_gpu_layers = -1
    params.devices = ctypes.cast(devices.array, ctypes.c_void_p)
    params.tensor_buft_overrides = table.array
    return (devices, table)


def simulate_placement(path: str | os.PathLike, plan: Plan, rpc: Sequence[str] = ()) -> PlacementReport:
    """Runs llama.cpp's loader on `path` without allocating or reading weights
    (no_alloc), so that its own choice of buffer type for every tensor can be
    compared with `plan` even for a shape-only file. Sizes are not compared."""
    read_header(path)
    params = lib().llama_model_default_params()
    params.no_alloc, params.load_mode = True, LOAD_MODES["none"]
    keepalive = placement_params(plan, params, rpc)
    with _log.capture() as lines:
        ModelHandle(str(path), params, keepalive).close()
    return build_report(plan, lines, check_sizes=False)
