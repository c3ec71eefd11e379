"""The placement planner: a pure function of a tensor table and device
capacities that decides where every weight lives, and the override list that
makes llama.cpp do exactly that.

The base layout is llama.cpp's with every layer offloaded: the token embedding
on the CPU, everything else on the accelerator. Then, first match wins:
the user's `-ot PATTERN=BUFFER_TYPE` overrides, then the strategy's:
  gpu         nothing moves;
  cpu-moe     all routed experts to the CPU;
  n-cpu-moe N routed experts of layers 0..N-1 to the CPU (llama.cpp's count);
  fit         routed experts stay on the accelerator, from the last layer down,
              while weights + KV cache + compute reserve fit the budget; past the
              last whole layer that fits, single expert tensors fill what is left.
The strategy's overrides are anchored regular expressions that mean the same in
Python's `re` and in llama.cpp's std::regex (ECMAScript).
"""
from __future__ import annotations

import re
from collections import defaultdict

from ..errors import PlacementError
from ..gguf_io.tensors import Tensor, TensorTable
from .plan import CPU, STRATEGIES, DevicePlan, DeviceSpec, Placement, Plan, PlanRequest


def margin_for(capacity: int) -> int:
    """Memory left free under `fit` without an explicit budget: 5%, at most 1 GiB."""
    return min(capacity // 20, 1 << 30)


def reserve_bytes(table: TensorTable, n_ctx: int, n_ubatch: int) -> int:
    """Estimate of llama.cpp's compute buffer on the accelerator: logits for a
    ubatch, a few activations of width n_embd, and attention scores."""
    hp = table.hparams
    logits = 4 * n_ubatch * hp.n_vocab
    activations = 4 * n_ubatch * 8 * hp.n_embd
    scores = 4 * n_ubatch * hp.n_head * n_ctx
    return logits + activations + scores


def compile_overrides(overrides, valid_targets: dict[str, str]) -> list[tuple[re.Pattern, str]]:
    """Checks user overrides: patterns compile, targets name a device."""
    compiled = []
    for pattern, target in overrides:
        if target not in valid_targets:
            raise PlacementError(f"-ot {pattern}={target}: unknown buffer type {target!r}; "
                                 f"valid: {', '.join(sorted(valid_targets))}")
        try:
            compiled.append((re.compile(pattern), valid_targets[target]))
        except (re.error, OverflowError, RecursionError) as e:
            raise PlacementError(f"-ot {pattern}={target}: malformed pattern ({e})") from None
    return compiled


def _base_device(t: Tensor, acc: str | None) -> str:
    if acc is None or t.role == "token_embd":
        return CPU
    return acc


def _strategy_cpu(req: PlanRequest, movable: list[Tensor], budget_left: int) -> set[str]:
    """Names of the routed-expert tensors the strategy sends to the CPU."""
    if req.strategy == "gpu":
        return set()
    if req.strategy == "cpu-moe":
        return {t.name for t in movable}
    if req.strategy == "n-cpu-moe":
        return {t.name for t in movable if t.layer is not None and t.layer < req.n_cpu_moe}
    return _fit(movable, budget_left)


def _fit(movable: list[Tensor], budget_left: int) -> set[str]:
    by_layer: dict[int, list[Tensor]] = defaultdict(list)
    for t in movable:
        by_layer[t.layer if t.layer is not None else -1].append(t)
    on_cpu = {t.name for t in movable}
    left = budget_left
    pending: list[Tensor] = []
    for layer in sorted(by_layer, reverse=True):   # the last layers keep their experts
        group = by_layer[layer]
        size = sum(t.nbytes for t in group)
        if not pending and size <= left:
            on_cpu -= {t.name for t in group}
            left -= size
        else:
            pending.extend(group)
    for t in sorted(pending, key=lambda t: (-(t.layer or 0), t.name)):  # finer than layers
        if t.nbytes <= left:
            on_cpu.discard(t.name)
            left -= t.nbytes
    return on_cpu


def anchored_patterns(names: set[str]) -> list[str]:
    """Few anchored regexes matching exactly `names` (blk.N.suffix grouped)."""
    by_suffix: dict[str, set[int]] = defaultdict(set)
    loose = []
    for name in sorted(names):
        m = re.match(r"^blk\.(\d+)\.(.+)$", name)
        if m:
            by_suffix[m.group(2)].add(int(m.group(1)))
        else:
            loose.append(name)
    by_layers: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for suffix, layers in by_suffix.items():
        by_layers[tuple(sorted(layers))].append(suffix)
    out = []
    for layers, suffixes in sorted(by_layers.items()):
        lay = "|".join(str(i) for i in layers)
        suf = "|".join(re.escape(s) for s in sorted(suffixes))
        out.append(f"^blk\\.(?:{lay})\\.(?:{suf})$")
    out += [f"^{re.escape(n)}$" for n in loose]
    return out


def _validate(table: TensorTable, req: PlanRequest) -> None:
    if req.strategy not in STRATEGIES:
        raise PlacementError(f"unknown strategy {req.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    n_layer = table.hparams.n_layer
    if req.strategy == "n-cpu-moe" and not 0 <= req.n_cpu_moe <= n_layer:
        raise PlacementError(f"--n-cpu-moe {req.n_cpu_moe} is out of range: {table.path} has "
                             f"{n_layer} layers (0 to {n_layer})")
    if req.n_ctx < 1:
        raise PlacementError(f"context length must be >= 1, got {req.n_ctx}")
    if req.vram_budget is not None and req.vram_budget <= 0:
        raise PlacementError(f"--vram-budget must be positive, got {req.vram_budget}")


def plan(table: TensorTable, devices: list[DeviceSpec], request: PlanRequest = PlanRequest()) -> Plan:
    """Where every tensor of `table` goes on `devices` (a CPU and at most one
    accelerator is used; with none, everything falls back to the CPU)."""
    accs = [d for d in devices if d.kind == "accelerator"]
    acc = accs[0] if accs else None
    _validate(table, request)
    cpu_spec = next((d for d in devices if d.kind == "cpu"), DeviceSpec(CPU, "cpu", 0, CPU))
    notices = []
    if acc is None and request.strategy != "gpu":
        notices.append(f"no accelerator: strategy {request.strategy} falls back to the CPU")
    targets = {CPU: CPU, cpu_spec.name: CPU}
    for d in accs[:1]:
        targets[d.name] = d.name
        if d.buffer_type:
            targets[d.buffer_type] = d.name
    user = compile_overrides(request.overrides, targets)

    device_of: dict[str, str] = {}
    pinned = set()
    for t in table.tensors:
        device_of[t.name] = _base_device(t, acc.name if acc else None)
        for pattern, target in user:
            if pattern.search(t.name):
                device_of[t.name] = target
                pinned.add(t.name)
                break

    kv = table.hparams.kv_bytes(request.n_ctx) if acc else 0
    reserve = reserve_bytes(table, request.n_ctx, request.n_ubatch) if acc else 0
    movable = [t for t in table.tensors if t.role == "routed_experts" and t.name not in pinned
               and device_of[t.name] != CPU]
    budget_left = 0
    if acc and request.strategy == "fit":
        budget_left = _fit_budget(table, request, acc, device_of, movable, kv + reserve)
    strategy_cpu = _strategy_cpu(request, movable, budget_left) if acc else set()
    for name in strategy_cpu:
        device_of[name] = CPU
    overrides = list(request.overrides) + [(p, CPU) for p in anchored_patterns(strategy_cpu)]
    return _assemble(table, request, acc, cpu_spec, device_of, overrides, kv, reserve, notices)


def _fit_budget(table, request, acc, device_of, movable, kv_and_reserve) -> int:
    """Bytes left for routed experts under the budget, or an error if even the
    rest of the model does not fit."""
    budget = request.vram_budget if request.vram_budget is not None else \
        acc.capacity_bytes - margin_for(acc.capacity_bytes)
    movable_names = {t.name for t in movable}
    fixed = sum(t.nbytes for t in table.tensors
                if device_of[t.name] == acc.name and t.name not in movable_names) + kv_and_reserve
    if fixed > budget:
        raise PlacementError(
            f"budget {budget / 2**30:.2f} GiB on {acc.name} is below the minimum that fits: "
            f"{fixed / 2**30:.2f} GiB (all weights but the routed experts, the KV cache for "
            f"{request.n_ctx} tokens and the compute reserve)")
    return budget - fixed


def _assemble(table, request, acc, cpu_spec, device_of, overrides, kv, reserve, notices) -> Plan:
    placements = tuple(Placement(t.name, t.role, t.layer, t.nbytes, device_of[t.name]) for t in table.tensors)
    weights: dict[str, int] = defaultdict(int)
    for p in placements:
        weights[p.device] += p.bytes
    devs = [DevicePlan(CPU, "cpu", weights[CPU], 0 if acc else table.hparams.kv_bytes(request.n_ctx), 0,
                       cpu_spec.capacity_bytes)]
    if acc:
        devs.append(DevicePlan(acc.name, "accelerator", weights[acc.name], kv, reserve, acc.capacity_bytes))
        if devs[-1].total_bytes > acc.capacity_bytes:
            notices.append(f"{acc.name}: the plan needs {devs[-1].total_bytes / 2**30:.2f} GiB, "
                           f"more than its {acc.capacity_bytes / 2**30:.2f} GiB")
    return Plan(table.path, request, acc.name if acc else None, tuple(devs), placements,
                tuple(overrides), tuple(notices))
