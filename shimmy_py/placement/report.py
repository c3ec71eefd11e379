"""llama.cpp's own account of where the weights went, read from its log
(buffer sizes and applied overrides), compared with the Plan."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..sizes import MiB
from .plan import CPU, Plan


def device_of_buffer(buffer_name: str, buffer_devices: dict[str, str] | None = None) -> str:
    """llama.cpp buffer name -> device: CPU_Mapped, CPU_REPACK, CUDA_Host are host memory."""
    if buffer_name.startswith("CPU") or buffer_name.endswith("_Host"):
        return CPU
    if buffer_devices and buffer_name in buffer_devices:   # RPC1's buffer type is RPC0[host:port] of its server
        return buffer_devices[buffer_name]
    return buffer_name.split("[", 1)[0]


_BUFFER_LINE = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([0-9.]+) MiB")
_ANY_BUFFER_LINE = re.compile(r"\s(\S+)\s+(model|KV|RS|compute|output) buffer size =\s+([0-9.]+) MiB")
_OVERRIDE_LINE = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")


@dataclass(frozen=True)
class PlacementReport:
    """llama.cpp's own account of the weights beside the Plan's."""
    planned: dict[str, int]
    actual: dict[str, int]                 # device -> bytes, from llama.cpp's buffer sizes
    buffers: dict[str, float]              # llama.cpp buffer name -> MiB as logged
    overridden: dict[str, str]             # tensor -> buffer type, as llama.cpp logged
    allocated: dict[str, int]              # device -> weights + KV + compute + output buffers
    kv: dict[str, int] = field(default_factory=dict)        # device -> llama.cpp's KV cache (and RS) buffers
    compute: dict[str, int] = field(default_factory=dict)   # device -> llama.cpp's compute buffers
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{'device':<10} {'planned MiB':>12} {'llama.cpp MiB':>14}"]
        for dev in sorted(set(self.planned) | set(self.actual)):
            lines.append(f"{dev:<10} {self.planned.get(dev, 0) / MiB:12.2f} {self.actual.get(dev, 0) / MiB:14.2f}")
        lines += [f"problem: {p}" for p in self.problems] or ["llama.cpp placed the weights as planned"]
        return "\n".join(lines)


def build_report(plan_: Plan, log_lines: list[str], check_sizes: bool = True,
                 buffer_devices: dict[str, str] | None = None) -> PlacementReport:
    """Compares the Plan with the buffer sizes and overrides llama.cpp logged;
    `buffer_devices` names the device of each buffer type (ggml's own list)."""
    buffers, overridden, allocated, kinds = {}, {}, {}, {"KV": {}, "compute": {}}
    for line in log_lines:
        if m := _BUFFER_LINE.search(line):
            buffers[m.group(1)] = float(m.group(2))
        elif m := _OVERRIDE_LINE.search(line):
            overridden[m.group(1)] = m.group(2)
        if m := _ANY_BUFFER_LINE.search(line):
            dev = device_of_buffer(m.group(1), buffer_devices)
            size = round(float(m.group(3)) * MiB)
            allocated[dev] = allocated.get(dev, 0) + size
            kind = "KV" if m.group(2) == "RS" else m.group(2)     # recurrent state is the KV cache's share
            if kind in kinds:
                kinds[kind][dev] = kinds[kind].get(dev, 0) + size
    actual: dict[str, int] = {}
    mapped = set()  # a mapped buffer covers a file range, other devices' tensors included
    for name, mib in buffers.items():
        dev = device_of_buffer(name, buffer_devices)
        actual[dev] = actual.get(dev, 0) + round(mib * MiB)
        if "Mapped" in name:
            mapped.add(dev)
    planned = {d: b for d, b in plan_.weights_by_device().items() if b}
    problems = []
    for dev in sorted(set(planned) | set(actual)) if check_sizes else ():
        n_tensors = sum(1 for t in plan_.tensors if t.device == dev)
        slack = 0.01 * MiB * len(buffers) + 512 * n_tensors  # log rounding + alignment padding
        short = planned.get(dev, 0) - actual.get(dev, 0)
        if short > slack or (dev not in mapped and -short > slack):
            problems.append(f"{dev}: planned {planned.get(dev, 0)} bytes, llama.cpp holds {actual.get(dev, 0)}")
    if plan_.accelerator:
        expected = {t.name for t in plan_.tensors if t.device == CPU and t.role != "token_embd"}
        moved = {n for n, b in overridden.items() if device_of_buffer(b, buffer_devices) == CPU}
        if moved != expected:
            problems.append(f"llama.cpp moved to the CPU {sorted(moved - expected)[:5]} unplanned, "
                            f"and missed {sorted(expected - moved)[:5]}")
    return PlacementReport(planned, actual, buffers, overridden, allocated, kv=kinds["KV"],
                           compute=kinds["compute"], problems=problems)
