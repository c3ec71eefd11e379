"""The placement planner: a pure function of a tensor table and device
capacities that decides where every weight lives, and the override list and
layer split that make llama.cpp do exactly that.

The base layout is llama.cpp's with every layer offloaded: the token embedding
on the CPU, the layers split between the accelerators (any number: local GPUs,
RPC servers) in proportion to their capacity, the output head with the last
layer slot. Then, first match wins:
the user's `-ot PATTERN=BUFFER_TYPE` overrides, then the strategy's:
  gpu         nothing moves;
  cpu-moe     all routed experts to the CPU;
  n-cpu-moe N routed experts of layers 0..N-1 to the CPU (llama.cpp's count);
  fit         on each accelerator, routed experts of its layers stay, from its
              last layer down, while weights + KV cache + compute reserve fit
              its budget; past the last whole layer that fits, single expert
              tensors fill what is left; the rest go to host RAM.
The strategy's overrides are anchored regular expressions that mean the same in
Python's `re` and in llama.cpp's std::regex (ECMAScript).
"""
from __future__ import annotations

import re
from collections import defaultdict

from ..errors import PlacementError
from ..gguf_io.tensors import Tensor, TensorTable
from ..sizes import gib
from .plan import CPU, NOT_LOADED, DevicePlan, DeviceSpec, Placement, Plan, PlanRequest
from .strategies import budgeted, kind
from .tiers import host_tiers


def margin_for(capacity: int) -> int:
    """Memory left free under `fit` without an explicit budget: 5%, at most 1 GiB."""
    return min(capacity // 20, 1 << 30)


def reserve_bytes(table: TensorTable, n_ctx: int, n_ubatch: int, flash_attn: bool = True) -> int:
    """Estimate of llama.cpp's compute buffer on the accelerator: logits for a
    ubatch, a few activations of width n_embd, and, without flash attention
    (llama.cpp's default turns it on where the backend has it), the attention
    scores. Within 10% of llama.cpp's own buffers for the tested families
    (tests/test_families.py)."""
    hp = table.hparams
    logits = 4 * n_ubatch * hp.n_vocab
    activations = 4 * n_ubatch * 8 * hp.n_embd
    scores = 0 if flash_attn else 4 * n_ubatch * hp.n_head * n_ctx
    return logits + activations + scores


def host_compute_bytes(table: TensorTable, request) -> int:
    """The part of llama.cpp's compute buffer a generation touches when the
    CPU runs the whole graph: a ubatch's activations and a logits row per
    sequence. The buffer is sized for a whole ubatch of logits (perplexity,
    embeddings), but host pages never written take no RAM, where an
    accelerator's buffer is all committed."""
    hp = table.hparams
    return 4 * request.n_ubatch * 8 * hp.n_embd + 4 * hp.n_vocab * max(1, request.n_seq)


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


def layer_split(accs: list[DeviceSpec], n_layer: int) -> list[int]:
    """Layer slots per accelerator (the output is slot n_layer), in proportion
    to capacity, largest remainders first; llama.cpp given these as its
    tensor_split puts layer il on the first device whose running total
    exceeds il, so the plan and the load agree layer by layer."""
    slots = n_layer + 1
    total = sum(max(a.capacity_bytes, 0) for a in accs)
    if total <= 0:
        shares = [slots / len(accs)] * len(accs)
    else:
        shares = [slots * max(a.capacity_bytes, 0) / total for a in accs]
    counts = [int(x) for x in shares]
    for i in sorted(range(len(accs)), key=lambda i: (counts[i] - shares[i], -i))[:slots - sum(counts)]:
        counts[i] += 1
    return counts


def _layer_devices(accs: list[DeviceSpec], counts: list[int], n_layer: int) -> list[str]:
    """The accelerator of each layer slot 0..n_layer (the last is the output)."""
    out = []
    for acc, n in zip(accs, counts):
        out += [acc.name] * n
    return out[:n_layer + 1]


def _base_device(t: Tensor, slot_device: list[str], mtp: bool = False) -> str:
    """llama.cpp's placement with every layer offloaded: the token embedding
    on the CPU, a layer's tensors on its layer's device, the rest (output
    head, final norm) with the output. A NextN block is not loaded at all,
    unless MTP drafting uses it (its layer's device, as llama.cpp puts it)."""
    if t.role == "mtp" and not mtp:
        return NOT_LOADED
    if not slot_device or t.role == "token_embd":
        return CPU
    if t.layer is not None and t.layer < len(slot_device) - 1:
        return slot_device[t.layer]
    return slot_device[-1]


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
    kind(req.strategy).check(req.n_cpu_moe, table.hparams.n_layer, table.path)
    if req.n_ctx < 1:
        raise PlacementError(f"context length must be >= 1, got {req.n_ctx}")
    if req.vram_budget is not None and req.vram_budget <= 0:
        raise PlacementError(f"--vram-budget must be positive, got {req.vram_budget}")


def plan(table: TensorTable, devices: list[DeviceSpec], request: PlanRequest = PlanRequest()) -> Plan:
    """Where every tensor of `table` goes on `devices`: the CPU and any number
    of accelerators (local GPUs, RPC servers), layers split between these in
    proportion to capacity; with none, everything falls back to the CPU."""
    accs = [d for d in devices if d.kind == "accelerator"]
    hosts = [d for d in devices if d.kind == "host"]     # RAM on other hosts (RPC servers on their CPU)
    if hosts and not accs:
        accs, hosts = hosts, []                           # no GPU anywhere: the hosts take the layers
    _validate(table, request)
    cpu_spec = next((d for d in devices if d.kind == "cpu"), DeviceSpec(CPU, "cpu", 0, CPU))
    notices = []
    if not accs and request.strategy != "gpu":
        notices.append(f"no accelerator: strategy {request.strategy} falls back to the CPU")
    targets = {CPU: CPU, cpu_spec.name: CPU}
    for d in accs + hosts:
        targets[d.name] = d.name
        if d.buffer_type:
            targets[d.buffer_type] = d.name
    user = compile_overrides(request.overrides, targets)
    n_layer = table.hparams.n_layer
    counts = layer_split(accs, n_layer) if accs else []
    slot_device = _layer_devices(accs, counts, n_layer) if accs else []

    device_of: dict[str, str] = {}
    pinned = set()
    for t in table.tensors:
        device_of[t.name] = _base_device(t, slot_device, request.mtp)
        for pattern, target in user if t.role != "mtp" else ():
            if pattern.search(t.name):
                device_of[t.name] = target
                pinned.add(t.name)
                break

    kv = _kv_by_device(table, request, slot_device)
    reserve = _reserve_by_device(table, request, accs, slot_device)
    movable = [t for t in table.tensors if t.role == "routed_experts" and t.name not in pinned
               and device_of[t.name] != CPU]
    budgets = {}
    strategy = kind(request.strategy)
    if accs and strategy.budgeted:
        budgets = {a.name: _fit_budget(table, request, a, device_of, movable, kv[a.name] + reserve[a.name])
                   for a in accs if a.name in kv}
    strategy_cpu = strategy.to_cpu(movable, request.n_cpu_moe, budgets, device_of) if accs else set()
    spill = _spill(table, strategy_cpu, [cpu_spec, *hosts], device_of)
    overrides = list(request.overrides)
    for dev in [cpu_spec, *hosts]:
        names = {n for n, d in spill.items() if d == dev.name}
        overrides += [(p, CPU if dev is cpu_spec else dev.buffer_type or dev.name) for p in anchored_patterns(names)]
    for name, dev in spill.items():
        device_of[name] = CPU if dev == cpu_spec.name else dev
    for h in hosts:
        reserve[h.name] = 4 * request.n_ubatch * 8 * table.hparams.n_embd if h.name in spill.values() else 0
    return _assemble(table, request, accs + hosts, cpu_spec, device_of, overrides, kv, reserve, notices,
                     [c for c in counts] + [0] * len(hosts))


def _spill(table, names: set[str], ram: list[DeviceSpec], device_of: dict[str, str]) -> dict[str, str]:
    """Routed experts leaving the accelerators, layer by layer, to the host-RAM
    devices (the local CPU, other hosts) in proportion to their capacity: each
    layer goes where the most of its share is still unfilled. With only the
    local CPU, all of them go there."""
    if len(ram) == 1:
        return {n: ram[0].name for n in names}
    by_layer: dict[int, list[Tensor]] = defaultdict(list)
    for t in table.tensors:
        if t.name in names:
            by_layer[t.layer if t.layer is not None else -1].append(t)
    total = sum(t.nbytes for group in by_layer.values() for t in group)
    capacity = sum(max(d.capacity_bytes, 0) for d in ram) or 1
    unfilled = {d.name: total * max(d.capacity_bytes, 0) / capacity for d in ram}
    out = {}
    for layer in sorted(by_layer):
        dev = max(ram, key=lambda d: (unfilled[d.name], -ram.index(d))).name
        unfilled[dev] -= sum(t.nbytes for t in by_layer[layer])
        out.update({t.name: dev for t in by_layer[layer]})
    return out


def _kv_by_device(table: TensorTable, request: PlanRequest, slot_device: list[str]) -> dict[str, int]:
    """The KV cache of each layer lives with the layer (the MTP head's, of
    its own context, with the output)."""
    hp = table.hparams
    out: dict[str, int] = defaultdict(int)
    for layer, dev in enumerate(slot_device[:hp.n_layer_trunk]):
        out[dev] += hp.kv_layer_bytes(layer, request.n_ctx, n_seq=request.n_seq)
    if slot_device:
        out[slot_device[-1]] += _mtp_kv(table, request)
    return dict(out)


def _mtp_kv(table: TensorTable, request: PlanRequest) -> int:
    """The KV cache of speculative draft-mtp's head: its NextN layers, for the whole context."""
    hp = table.hparams
    if not request.mtp:
        return 0
    return sum(hp.kv_layer_bytes(i, request.n_ctx, n_seq=request.n_seq) for i in range(hp.n_layer_trunk, hp.n_layer))


def _reserve_by_device(table, request, accs, slot_device) -> dict[str, int]:
    """The compute reserve on each accelerator that holds layers; the logits'
    share only on the one with the output."""
    full = reserve_bytes(table, request.n_ctx, request.n_ubatch, request.flash_attn)
    logits = 4 * request.n_ubatch * table.hparams.n_vocab
    used, measured = set(slot_device), dict(request.measured_reserve)
    out = {a.name: (full if slot_device and a.name == slot_device[-1] else full - logits) if a.name in used else 0
           for a in accs}
    return {d: measured.get(d, b) for d, b in out.items()}


def _fit_budget(table, request, acc, device_of, movable, kv_and_reserve) -> int:
    """Bytes left on `acc` for routed experts under the budget, or an error
    if even the rest of its layers does not fit."""
    margin = margin_for(acc.capacity_bytes) if request.fit_margin else 0
    budget = request.vram_budget if request.vram_budget is not None else acc.capacity_bytes - margin
    movable_names = {t.name for t in movable}
    fixed = sum(t.nbytes for t in table.tensors
                if device_of[t.name] == acc.name and t.name not in movable_names) + kv_and_reserve
    if fixed > budget:
        raise PlacementError(
            f"budget {gib(budget)} on {acc.name} is below the minimum that fits: "
            f"{gib(fixed)} (all weights but the routed experts of its layers, their KV cache for "
            f"{request.n_ctx} tokens and the compute reserve)")
    return budget - fixed


def network_bytes(table: TensorTable, placements, remote: set[str]) -> int:
    """Activations (F32) that cross to or from a remote device per decoded
    token: the hidden state between consecutive layers on different devices
    when one is remote, to a layer's routed experts and back when they live
    elsewhere and either side is remote, and the logits home from a remote
    output head.
    An estimate: what ggml's RPC protocol adds (commands, graph) is not counted."""
    width = 4 * table.hparams.n_embd
    head = next((p.device for p in placements if p.role == "output"), CPU)
    attn: dict[int, str] = {}
    experts: dict[int, str] = {}
    for p in placements:
        if p.layer is None:
            continue
        if p.role == "routed_experts":
            experts.setdefault(p.layer, p.device)
        else:
            attn.setdefault(p.layer, p.device)
    total, prev = 0, CPU            # the token embedding is on the CPU
    for layer in sorted(attn):
        dev = attn[layer]
        if dev != prev and (dev in remote or prev in remote):
            total += width
        there = experts.get(layer, dev)
        if there != dev and (dev in remote or there in remote):
            total += 2 * width           # to the experts' device and back
        prev = dev
    if head in remote:
        total += 4 * table.hparams.n_vocab
    return total


def _assemble(table, request, accs, cpu_spec, device_of, overrides, kv, reserve, notices, counts) -> Plan:
    placements = tuple(Placement(t.name, t.role, t.layer, t.nbytes, device_of[t.name]) for t in table.tensors)
    weights: dict[str, int] = defaultdict(int)
    for p in placements:
        weights[p.device] += p.bytes
    cpu_kv = 0 if accs else table.hparams.kv_bytes(request.n_ctx, n_seq=request.n_seq) + _mtp_kv(table, request)
    cpu_reserve = 0 if accs else host_compute_bytes(table, request)
    devs = [DevicePlan(CPU, "cpu", weights[CPU], cpu_kv, cpu_reserve, cpu_spec.capacity_bytes)]
    for acc in accs:
        devs.append(DevicePlan(acc.name, acc.kind, weights[acc.name], kv.get(acc.name, 0),
                               reserve.get(acc.name, 0), acc.capacity_bytes))
        if devs[-1].total_bytes > acc.capacity_bytes:
            notices.append(f"{acc.name}: the plan needs {gib(devs[-1].total_bytes)}, "
                           f"more than its {gib(acc.capacity_bytes)}")
    host = devs[0]
    tiers = _tiers(table, request, cpu_spec, placements, host)
    if tiers is None and request.expert_profile is not None:
        notices.append("--expert-profile: nothing streams in this plan (its host part fits the RAM budget), so the "
                       "profile chooses nothing")
    if cpu_spec.capacity_bytes and host.total_bytes > cpu_spec.capacity_bytes:
        message = (f"CPU: the plan needs {gib(host.total_bytes)} of host RAM, more than the "
                   f"{gib(cpu_spec.capacity_bytes)} available")
        if tiers is not None:
            notices.append(f"{message}: routed experts stream from the file (the tiers below; `shimmy-py plan` "
                           "names smaller files that would fit)")
        elif budgeted(request.strategy):   # fit counts VRAM and RAM together: nowhere left to put it
            acc_left = ", ".join(f"{d.name} {d.total_bytes / 2**30:.2f} of {gib(d.capacity_bytes)}"
                                 for d in devs[1:])
            raise PlacementError(f"{table.path} does not fit: {message}; the accelerators hold {acc_left}")
        else:
            notices.append(message)
    remote = {a.name for a in accs if a.name.startswith("RPC")}
    return Plan(table.path, request, tuple(a.name for a in accs), tuple(devs), placements, tuple(overrides),
                tuple(notices), tuple(counts), network_bytes(table, placements, remote),
                tuple((a.name, a.buffer_type) for a in accs if a.buffer_type), tiers)


def _tiers(table, request: PlanRequest, cpu_spec: DeviceSpec, placements, host: DevicePlan):
    """What streams from the file when the host part is more than the RAM for
    it: --ram-budget, or the CPU's capacity less fit's margin."""
    if request.ram_budget is not None:
        budget = request.ram_budget
    elif cpu_spec.capacity_bytes > 0:             # fit_margin False: the capacity is a budget already
        budget = cpu_spec.capacity_bytes - (margin_for(cpu_spec.capacity_bytes) if request.fit_margin else 0)
    else:
        return None
    on_host = [p for p in placements if p.device == CPU]
    return host_tiers(on_host, table.hparams, budget, host.kv_bytes + host.reserve_bytes, request.expert_profile)
