"""What the machine offers, as the planner sees it: ggml backend devices (CPU,
GPUs, RPC servers), NVIDIA memory through NVML where present, host RAM
through psutil. RPC servers are attached here and nowhere else.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import psutil

from ..errors import PlacementError
from ..native.backend import Device, add_rpc_servers, list_devices
from ..sizes import gib, parse_size
from .plan import CPU, DeviceSpec

HYPOTHETICAL = "GPU"   # the accelerator of a plan for --target-vram


@dataclass(frozen=True)
class NvidiaGPU:
    index: int
    name: str
    free_bytes: int
    total_bytes: int
    process_bytes: int | None  # this process's use, when NVML reports it


def nvml_gpus() -> tuple[list[NvidiaGPU], str | None]:
    """NVIDIA GPUs and a notice (None when NVML answered)."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as e:  # no driver, no library: a notice, not an error
        return [], f"NVML not available ({type(e).__name__}): no NVIDIA GPU memory figures"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            mine = None
            try:
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    if p.pid == os.getpid():
                        mine = p.usedGpuMemory
            except pynvml.NVMLError:
                pass
            name = pynvml.nvmlDeviceGetName(h)
            gpus.append(NvidiaGPU(i, name.decode() if isinstance(name, bytes) else name,
                                  mem.free, mem.total, mine))
        return gpus, None
    finally:
        pynvml.nvmlShutdown()


def process_vram_bytes() -> int | None:
    """GPU memory used by this process, summed over GPUs (None without NVML)."""
    gpus, notice = nvml_gpus()
    if notice or not gpus:
        return None
    used = [g.process_bytes for g in gpus if g.process_bytes is not None]
    return sum(used) if used else 0


def host_memory() -> tuple[int, int]:
    """(available, total) host RAM, within this process's memory cgroup limit when it has one."""
    vm = psutil.virtual_memory()
    limited = cgroup_memory()
    if limited is None:
        return vm.available, vm.total
    return min(vm.available, limited[0]), min(vm.total, limited[1])


def _stat(path: str) -> dict[str, int]:
    with open(path) as f:
        return {k: int(v) for k, v in (line.split() for line in f if len(line.split()) == 2)}


def cgroup_memory(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[int, int] | None:
    """(available, limit) under the memory limit of this process's cgroup (v1
    or v2, parents' limits included), or None without a limit: the limit less
    what the group holds besides the page cache (which the kernel reclaims)."""
    try:
        with open(proc_cgroup) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
        v1 = next((p for _, names, p in lines if "memory" in names.split(",")), None)
        if v1 is not None:
            stat = _stat(f"{root}/memory{v1}/memory.stat")
            limit = stat.get("hierarchical_memory_limit", 1 << 62)
            with open(f"{root}/memory{v1}/memory.usage_in_bytes") as f:
                used = int(f.read()) - stat.get("total_cache", 0)
        else:
            v2 = next((p for h, _, p in lines if h == "0"), None)
            if v2 is None:
                return None
            limit, used, path = 1 << 62, 0, v2
            while True:
                base = f"{root}{path}"
                if os.path.exists(f"{base}/memory.max"):
                    with open(f"{base}/memory.max") as f:
                        text = f.read().strip()
                    if text != "max" and int(text) < limit:
                        limit = int(text)
                        with open(f"{base}/memory.current") as f:
                            used = int(f.read()) - _stat(f"{base}/memory.stat").get("file", 0)
                if path in ("/", ""):
                    break
                path = os.path.dirname(path)
    except (OSError, ValueError):
        return None
    if limit >= psutil.virtual_memory().total:
        return None
    return max(0, limit - max(used, 0)), limit


def attach_rpc_servers(endpoints) -> None:
    """Makes each llama.cpp RPC server (HOST:PORT) one more ggml device, after
    a handshake that names a server that is down. Once per server and process:
    ggml cannot unregister a backend."""
    if endpoints:
        add_rpc_servers(endpoints)


def devices(rpc=()) -> list[Device]:
    """ggml's devices after attaching the given RPC servers."""
    attach_rpc_servers(rpc)
    return list_devices()


def buffer_devices() -> dict[str, str]:
    """Each ggml buffer type's device name, as llama.cpp's log names buffers."""
    return {d.buffer_type: d.name for d in list_devices() if d.buffer_type}


def local_names(plan_) -> tuple[str, ...]:
    """The plan's accelerators as this process names them: a plan made in
    another process (the server's, for a worker) may call a ggml-rpc-server's
    device RPC1 where this one, which registered fewer servers, says RPC0;
    their buffer types name the endpoint and agree."""
    here, planned = buffer_devices(), dict(plan_.buffer_types)
    return tuple(here.get(planned.get(name, ""), name) for name in plan_.accelerators)


def planned_buffer_devices(plan_) -> dict[str, str]:
    """Each buffer type's device, as the plan names it (llama.cpp's log, read
    back against the plan, names buffers by type; see local_names)."""
    return {**buffer_devices(), **{bt: name for name, bt in plan_.buffer_types}}


def device_specs(rpc=(), target_vram=None, capacities: dict | None = None, host_ram=()) -> list[DeviceSpec]:
    """The CPU (capacity: available RAM) and every accelerator ggml offers
    (local GPUs, then each RPC server's devices; capacity: the free memory
    it reports), or one hypothetical accelerator of `target_vram` bytes.
    `capacities` ({device name: size}) plans a device for less than it reports.
    `host_ram` names RPC servers that serve their host's RAM (ggml-rpc-server
    on a CPU): ggml cannot tell them from GPUs, the planner must (routed
    experts spill there; layers stay on the accelerators)."""
    rpc = tuple(dict.fromkeys([*rpc, *host_ram]))
    attach_rpc_servers(rpc)
    available, _ = host_memory()
    specs = [DeviceSpec(CPU, "cpu", available, CPU)]
    if target_vram is not None:
        specs.append(DeviceSpec(HYPOTHETICAL, "accelerator", parse_size(target_vram), HYPOTHETICAL))
        return with_capacities(specs, capacities)
    wanted = set(rpc)
    for d in list_devices():
        # local accelerators, and the RPC servers this plan names (ggml keeps
        # every server registered in this process; others are not asked for)
        if d.kind == "accelerator" and d.reachable and (not d.name.startswith("RPC") or d.description in wanted):
            kind = "host" if d.description in host_ram else "accelerator"
            specs.append(DeviceSpec(d.name, kind, d.free_bytes, d.buffer_type))
    return with_capacities(specs, capacities)


def with_capacities(specs: list[DeviceSpec], capacities: dict | None) -> list[DeviceSpec]:
    """`specs` with the capacities ({device name: size}) that plan a device for
    less than it reports; a name that is no device here is an error."""
    from dataclasses import replace
    capacities = {k: parse_size(v) for k, v in (capacities or {}).items()}
    unknown = set(capacities) - {s.name for s in specs}
    if unknown:
        raise PlacementError(f"--device-capacity names no device here: {', '.join(sorted(unknown))} "
                             f"(present: {', '.join(s.name for s in specs)})")
    return [replace(s, capacity_bytes=capacities[s.name]) if s.name in capacities else s for s in specs]


def report(rpc=()) -> dict:
    """Everything above, as one JSON-able dict."""
    gpus, notice = nvml_gpus()
    avail, total = host_memory()
    return {"devices": [asdict(d) for d in devices(rpc)],
            "nvml": [asdict(g) for g in gpus], "nvml_notice": notice,
            "host": {"available_bytes": avail, "total_bytes": total}}


def format_report(r: dict) -> str:
    lines = [f"{'device':<10} {'kind':<12} {'free':>11} {'total':>11}  description"]
    for d in r["devices"]:
        lines.append(f"{d['name']:<10} {d['kind']:<12} {gib(d['free_bytes']):>11} "
                     f"{gib(d['total_bytes']):>11}  {d['description']}")
    for g in r["nvml"]:
        lines.append(f"NVML GPU {g['index']}: {g['name']}, {gib(g['free_bytes'])} free of {gib(g['total_bytes'])}")
    if r["nvml_notice"]:
        lines.append(r["nvml_notice"])
    h = r["host"]
    lines.append(f"host RAM: {gib(h['available_bytes'])} available of {gib(h['total_bytes'])}")
    return "\n".join(lines)
