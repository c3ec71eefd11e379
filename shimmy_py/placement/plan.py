"""The Plan: where every tensor lives and what each device holds, as records
(frozen dataclasses), and its renderings: a table with a per-layer map, JSON,
and the equivalent llama-server command line."""
from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass, field

from .. import defaults
from ..sizes import gib

CPU = "CPU"                 # llama.cpp's name for host RAM's device, in plans and budgets
HOST_RAM = CPU
NOT_LOADED = "not loaded"   # the device of a tensor llama.cpp skips (a NextN block): no memory anywhere


@dataclass(frozen=True)
class DeviceSpec:
    """A device as the planner sees it: a name and how much it may hold."""
    name: str
    kind: str                 # "cpu" or "accelerator"
    capacity_bytes: int
    buffer_type: str = ""     # llama.cpp's buffer type name, also accepted by -ot


@dataclass(frozen=True)
class PlanRequest:
    strategy: str = "gpu"
    n_cpu_moe: int = 0
    vram_budget: int | None = None      # fit: explicit budget instead of capacity less a margin
    overrides: tuple[tuple[str, str], ...] = ()  # user's (pattern, buffer type), first match wins
    n_ctx: int = defaults.N_CTX
    n_ubatch: int = defaults.N_UBATCH   # llama.cpp's default physical batch, sizes the reserve
    flash_attn: bool = True             # llama.cpp's default ("auto") uses it: no full attention-score buffer
    fit_margin: bool = True             # fit leaves margin_for(capacity) free; False: capacities are budgets
    n_seq: int = 1                      # sequences decoded together: recurrent state is per sequence
    measured_reserve: tuple[tuple[str, int], ...] = ()   # (device, bytes) from a dry run, instead of the estimate
    mtp: bool = False                   # the NextN/MTP block is loaded (speculative draft-mtp)
    ram_budget: int | None = None       # host RAM for the host part; past it experts stream (tiers.py)
    expert_profile: object = None       # tiers.ExpertProfile: the most routed experts stay resident


@dataclass(frozen=True)
class DevicePlan:
    name: str
    kind: str
    weights_bytes: int
    kv_bytes: int
    reserve_bytes: int
    capacity_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.reserve_bytes


@dataclass(frozen=True)
class Placement:
    name: str
    role: str
    layer: int | None
    bytes: int
    device: str


@dataclass(frozen=True)
class Plan:
    model: str
    request: PlanRequest
    accelerators: tuple[str, ...]            # in llama.cpp's device order; () without any
    devices: tuple[DevicePlan, ...]
    tensors: tuple[Placement, ...]
    overrides: tuple[tuple[str, str], ...]   # everything handed to llama.cpp, in order
    notices: tuple[str, ...] = field(default=())
    layer_split: tuple[int, ...] = ()        # layers (and the output, last) per accelerator: llama.cpp's tensor_split
    network_bytes_per_token: int = 0         # activations crossing to or from RPC devices per decoded token
    buffer_types: tuple[tuple[str, str], ...] = ()   # (device, its buffer type): ggml names RPC devices by
    #                                                  registration order in a process; "RPC0[host:port]" is stable
    tiers: object = None                     # tiers.Tiers when host RAM is short: what streams from the file

    @property
    def accelerator(self) -> str | None:
        """The first accelerator (the only one on a single-GPU machine), or None."""
        return self.accelerators[0] if self.accelerators else None

    def device(self, name: str) -> DevicePlan:
        return next(d for d in self.devices if d.name == name)

    def not_loaded(self) -> set[str]:
        """Tensors llama.cpp will skip as planned (a NextN block)."""
        return {t.name for t in self.tensors if t.device == NOT_LOADED}

    def accelerator_bytes(self) -> dict[str, int]:
        """What the plan holds on each accelerator (weights, KV cache, reserve):
        the capacity another model loaded beside it cannot have."""
        return {d.name: d.total_bytes for d in self.devices if d.kind != "cpu"}

    def held_bytes(self) -> dict[str, int]:
        """What the plan holds on each device (weights, KV cache, reserve); on
        the host, when experts stream, the resident set alone: admission's figure."""
        out = {d.name: d.total_bytes for d in self.devices}
        if self.tiers is not None:
            out[CPU] = self.tiers.resident_bytes + self.tiers.kv_reserve_bytes
        return out

    def weights_by_device(self) -> dict[str, int]:
        return {d.name: d.weights_bytes for d in self.devices}

    def __str__(self) -> str:
        return to_text(self)

    def __repr__(self) -> str:
        weights = ", ".join(f"{d.name} {gib(d.weights_bytes)}" for d in self.devices)
        return f"<Plan {self.request.strategy} of {self.model}: {weights}; print() it for the table>"


def to_json(plan: Plan) -> dict:
    return {
        "model": plan.model,
        "strategy": plan.request.strategy,
        "n_ctx": plan.request.n_ctx,
        "accelerator": plan.accelerator,
        "accelerators": list(plan.accelerators),
        "layer_split": list(plan.layer_split),
        "network_bytes_per_token": plan.network_bytes_per_token,
        "devices": [{"name": d.name, "type": d.kind, "weights_bytes": d.weights_bytes,
                     "kv_bytes": d.kv_bytes, "reserve_bytes": d.reserve_bytes,
                     "total_bytes": d.total_bytes, "capacity_bytes": d.capacity_bytes}
                    for d in plan.devices],
        "tensors": [_tensor_json(plan, t) for t in plan.tensors],
        "tiers": _tiers_json(plan.tiers),
        "overrides": [{"pattern": p, "buffer_type": b} for p, b in plan.overrides],
        "llama_server_args": server_args(plan),
        "notices": list(plan.notices),
    }


def _tensor_json(plan: Plan, t: Placement) -> dict:
    out = {"name": t.name, "role": t.role, "layer": t.layer, "bytes": t.bytes, "device": t.device}
    if plan.tiers is not None and t.device == CPU:
        out["tier"] = plan.tiers.tier_of(t.name)
        if t.role == "routed_experts":
            out["resident_experts"] = list(plan.tiers.resident_experts(t.layer))
    return out


def _tiers_json(tiers) -> dict | None:
    if tiers is None:
        return None
    return {"budget_bytes": tiers.budget_bytes, "resident_bytes": tiers.resident_bytes,
            "streamed_bytes": tiers.streamed_bytes, "cache_bytes": tiers.cache_bytes,
            "file_bytes_per_token": round(tiers.file_bytes_per_token), "miss_rate": round(tiers.miss_rate, 4),
            "profiled": tiers.profiled,
            "layers": [{"layer": t.layer, "expert_bytes": t.slice_bytes, "resident_experts": list(t.resident_experts),
                        "cached_experts": t.cached_experts, "miss_rate": round(t.miss_rate, 4)} for t in tiers.layers]}


def server_args(plan: Plan, rpc=()) -> list[str]:
    """llama-server flags that place the model as this plan does."""
    args = ["-m", plan.model, "-c", str(plan.request.n_ctx)]
    if rpc:
        args += ["--rpc", ",".join(rpc)]
    if plan.accelerator is None:
        return args + ["-ngl", "0"]
    args += ["-ngl", "999"]
    if len(plan.accelerators) > 1:
        args += ["--device", ",".join(plan.accelerators), "-ts", ",".join(map(str, plan.layer_split))]
    if plan.overrides:
        args += ["-ot", ",".join(f"{p}={b}" for p, b in plan.overrides)]
    return args


def layer_map(plan: Plan) -> list[str]:
    """One line per layer: bytes per side and the tensors on the CPU."""
    by_layer = defaultdict(list)
    for t in plan.tensors:
        by_layer[t.layer].append(t)
    lines = []
    for layer in sorted(by_layer, key=lambda x: -1 if x is None else x):
        tensors = by_layer[layer]
        on_acc = sum(t.bytes for t in tensors if t.device not in (CPU, NOT_LOADED))
        on_cpu = [t for t in tensors if t.device == CPU]
        short = sorted(t.name.split(".")[-2] if layer is not None else t.name.rsplit(".", 1)[0] for t in on_cpu)
        label = "   -" if layer is None else f"{layer:4d}"
        where = f"on CPU: {', '.join(short)}" if short and plan.accelerator else ""
        if all(t.device == NOT_LOADED for t in tensors):
            where = "not loaded (multi-token prediction)"
        accs = sorted({t.device for t in tensors if t.device not in (CPU, NOT_LOADED)})
        name = f" {','.join(accs)}" if len(plan.accelerators) > 1 and accs else ""
        on_cpu_bytes = sum(t.bytes for t in on_cpu)
        lines.append(f"{label}  acc{name} {gib(on_acc, 8)}  cpu {gib(on_cpu_bytes, 8)}  {where}".rstrip())
    return lines


def to_text(plan: Plan) -> str:
    lines = [f"plan {plan.request.strategy} for {plan.model} (context {plan.request.n_ctx})",
             f"{'device':<12} {'weights':>12} {'KV cache':>12} {'reserve':>12} {'total':>12} {'capacity':>12}"]
    for d in plan.devices:
        lines.append(f"{d.name:<12} {gib(d.weights_bytes, 8):>12} {gib(d.kv_bytes, 8):>12} "
                     f"{gib(d.reserve_bytes, 8):>12} {gib(d.total_bytes, 8):>12} {gib(d.capacity_bytes, 8):>12}")
    lines.append("per layer (layer  accelerator  CPU  tensors on the CPU):")
    lines += layer_map(plan)
    if plan.network_bytes_per_token:
        lines.append(f"network: about {plan.network_bytes_per_token / 1024:.1f} KiB of activations to or from "
                     "RPC devices per decoded token")
    if plan.tiers is not None:
        lines += plan.tiers.lines()
    lines.append("llama-server " + " ".join(shlex.quote(a) for a in server_args(plan)))
    lines += [f"notice: {n}" for n in plan.notices]
    return "\n".join(lines)
