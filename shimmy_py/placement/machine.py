"""From options to a Plan on this machine's devices, from a Plan to the
LoadSpec llama.cpp loads with, and the dry-run load that checks llama.cpp's
own choice of buffer for every tensor without allocating anything."""
from __future__ import annotations

import logging
import os
from dataclasses import replace

from ..errors import PlacementError
from ..gguf_io.arch import facts
from ..gguf_io.reader import read_header
from ..gguf_io.tensors import read_table
from ..native import install, log
from ..native.model_handle import LoadSpec, ModelHandle
from ..sizes import gib, mib
from .devices import (
    HYPOTHETICAL,
    attach_rpc_servers,
    device_specs,
    local_names,
    planned_buffer_devices,
    with_capacities,
)
from .options import PlacementOptions
from .plan import CPU, DeviceSpec, Plan
from .planner import plan
from .report import PlacementReport, build_report
from .strategies import budgeted

logger = logging.getLogger("shimmy_py")


def make_plan(path, options: PlacementOptions = PlacementOptions(), devices: list[DeviceSpec] | None = None,
              held: dict[str, int] | None = None) -> Plan:
    """Plans the model at `path` (or its GGUFHeader) on this machine's devices
    (after attaching the options' RPC servers), or on a hypothetical
    accelerator of `target_vram` bytes. `devices`: the devices as found
    before (the server's: a ggml-rpc-server held by a model's worker cannot
    be asked again), the options' capacities still applied. An explicit
    plan (strategy "plan") is returned as it is."""
    if options.strategy.name == "plan":
        return options.strategy.plan
    request = options.request()
    check_patterns(request.overrides)
    capacities = dict(options.device_capacity)
    if devices is not None:
        specs = with_capacities(devices, capacities)
    else:
        specs = device_specs(options.rpc, options.target_vram, capacities, options.host_ram)
    if held:
        specs = [replace(s, capacity_bytes=max(0, s.capacity_bytes - held.get(s.name, 0))) for s in specs]
    table = read_table(path)
    planned = plan(table, specs, request)
    measure = options.measure_reserve
    if measure and options.target_vram is not None:
        raise PlacementError("--measure-reserve runs llama.cpp on the devices themselves: it cannot measure a "
                             "hypothetical one (--target-vram)")
    if measure is None:      # fit, where the estimate is unchecked, and never with devices found before
        measure = budgeted(request.strategy) and devices is None and not facts(table.hparams.arch).reserve_checked
    if measure and planned.accelerators:
        return _with_measured_reserve(table, specs, planned)
    return planned


def _with_measured_reserve(table, specs, planned: Plan) -> Plan:
    """Plans again with the compute reserve llama.cpp's dry run reports for the
    plan, until the figures no longer move the placement (at most twice)."""
    from dataclasses import replace

    from .dryrun import measure_compute
    for _ in range(2):
        measured = measure_compute(table.path, planned, load_spec(planned, load_mode="none", no_alloc=True))
        again = plan(table, specs, replace(planned.request, measured_reserve=tuple(sorted(measured.items()))))
        settled = [t.device for t in again.tensors] == [t.device for t in planned.tensors]
        planned = again
        if settled:
            break
    figures = ", ".join(f"{d} {mib(b)}" for d, b in planned.request.measured_reserve)
    return replace(planned, notices=planned.notices + (f"compute reserve measured by a dry run of llama.cpp "
                                                        f"(no_alloc), not estimated: {figures}",))


def check_patterns(overrides) -> None:
    """-ot patterns as llama.cpp will compile them (std::regex, ECMAScript):
    one it refuses is an error now, not an exception inside its loader."""
    refused = install.std_regex_errors([p for p, _ in overrides])
    if refused:
        pattern, why = next(iter(refused.items()))
        raise PlacementError(f"-ot {pattern}: llama.cpp's std::regex (ECMAScript) refuses it: {why}")


def load_spec(plan_: Plan, load_mode: str | None = None, no_alloc: bool = False) -> LoadSpec:
    """How llama.cpp must load the model to place it as `plan_` says. Load mode:
    mmap when experts stream from the file (the plan's tiers); else "none"
    when the plan moves tensors to the CPU (llama.cpp's advice: mapped files
    and CPU overrides mix badly), else llama.cpp's own default."""
    if plan_.accelerator == HYPOTHETICAL:
        raise PlacementError("this plan is for a hypothetical accelerator (--target-vram): "
                             "it can be printed, not loaded")
    for notice in plan_.notices:
        logger.warning(notice)
    mtp = plan_.request.mtp
    if plan_.tiers is not None:        # experts stream: the file stays mapped, pages in and out
        if load_mode not in (None, "auto", "mmap") and not no_alloc:
            raise PlacementError(f"load mode {load_mode} cannot stream experts from the file: the host part of "
                                 f"this plan ({gib(plan_.device(CPU).weights_bytes)}) is more than its RAM budget "
                                 f"({gib(plan_.tiers.budget_bytes)}); use load mode mmap or give more --ram-budget")
        load_mode = load_mode or "mmap"
    repack = plan_.tiers is None
    if plan_.accelerator is None:
        return LoadSpec(no_alloc=no_alloc, load_mode=load_mode, n_gpu_layers=0, load_mtp=mtp, repack=repack)
    if load_mode is None and any(b == CPU for _, b in plan_.overrides):
        load_mode = "none"
    if not no_alloc:
        check_fits(plan_, mapped_host=load_mode not in ("none", "mlock"))
    return LoadSpec(no_alloc=no_alloc, load_mode=load_mode, n_gpu_layers=-1, devices=local_names(plan_),
                    overrides=tuple(plan_.overrides), tensor_split=plan_.layer_split, load_mtp=mtp, repack=repack)


def check_fits(plan_: Plan, mapped_host: bool) -> None:
    """Refuses, with the figures and before anything loads, a plan that
    overflows a device. Host RAM is exempt while the weights are memory-mapped
    (the page cache pages them in and out); copied in (load mode "none") they
    must fit."""
    for d in plan_.devices:
        if d.total_bytes > d.capacity_bytes > 0 and not (d.kind == "cpu" and mapped_host):
            raise PlacementError(
                f"{plan_.model} does not fit: {d.name} would hold {gib(d.total_bytes)} (weights "
                f"{d.weights_bytes / 2**30:.2f}, KV cache {d.kv_bytes / 2**30:.2f}, reserve "
                f"{d.reserve_bytes / 2**30:.2f}) of its {gib(d.capacity_bytes)}; try --cpu-moe, "
                "--fit or a smaller --ctx")


def simulate_placement(path: str | os.PathLike, plan_: Plan, rpc=()) -> PlacementReport:
    """Runs llama.cpp's loader on `path` without allocating or reading weights
    (no_alloc), so that its own choice of buffer type for every tensor can be
    compared with `plan_` even for a shape-only file. Sizes are not compared."""
    read_header(path)
    attach_rpc_servers(rpc)
    spec = load_spec(plan_, load_mode="none", no_alloc=True)
    with log.capture() as lines, log.expected_unused(plan_.not_loaded()):
        ModelHandle(str(path), spec).close()
    return build_report(plan_, lines, check_sizes=False, buffer_devices=planned_buffer_devices(plan_))
