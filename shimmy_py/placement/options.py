"""The placement flags of `plan`, `generate`, `serve` and `bench` as one
record, and the parsing of what users type: sizes ("8GiB"), llama.cpp's `-ot`
syntax, and bench's placement specs ("n-cpu-moe=8", "fit=8GiB")."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .. import defaults
from ..errors import PlacementError
from .plan import PlanRequest

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from 8589934592, "8GiB", "8 GB", "512MiB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise PlacementError(f"cannot read size {value!r}: use e.g. 8GiB, 24GB or 512MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_override_arg(text: str) -> list[tuple[str, str]]:
    """llama.cpp's `-ot` syntax: PATTERN=BUFFER_TYPE[,PATTERN=BUFFER_TYPE...]."""
    out = []
    for item in text.split(","):
        pattern, sep, target = item.rpartition("=")
        if not sep or not pattern or not target:
            raise PlacementError(f"-ot {item!r}: expected PATTERN=BUFFER_TYPE")
        out.append((pattern, target))
    return out


@dataclass(frozen=True)
class PlacementOptions:
    """The placement flags, as one record."""
    cpu_moe: bool = False
    n_cpu_moe: int | None = None
    fit: bool = False
    vram_budget: int | str | None = None
    overrides: tuple = ()            # "PAT=BUF[,PAT=BUF]" strings or (pattern, buffer type) pairs
    rpc: tuple = ()                  # "HOST:PORT" strings
    target_vram: int | str | None = None
    n_ctx: int = defaults.N_CTX
    device_capacity: tuple = ()      # "NAME=SIZE" strings or (name, size) pairs: plan a device for less
    flash_attn: bool = True          # False when the context turns it off: the reserve holds attention scores
    host_ram: tuple = ()             # "HOST:PORT" RPC servers serving their host's RAM: experts spill there
    fit_margin: bool = True          # False: the capacities are budgets already (the server's admission)
    n_seq: int = 1                   # sequences decoded together (the server's --parallel)
    measure_reserve: bool | None = None   # measure the compute reserve by a dry run (None: fit, where unchecked)

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
        return PlanRequest(strategy, self.n_cpu_moe or 0, budget, tuple(pairs), self.n_ctx,
                           flash_attn=self.flash_attn, fit_margin=self.fit_margin,
                           n_seq=self.n_seq)


def parse_capacities(items) -> dict:
    """--device-capacity NAME=SIZE (repeatable, or comma-separated) as {name: bytes}."""
    out = {}
    for item in items:
        pairs = [tuple(item)] if not isinstance(item, str) else \
            [tuple(x.rsplit("=", 1)) for x in item.split(",") if x]
        for pair in pairs:
            if len(pair) != 2 or not pair[0]:
                raise PlacementError(f"--device-capacity {item!r}: expected NAME=SIZE, e.g. RPC0=24GiB")
            out[pair[0]] = parse_size(pair[1])
    return out


def parse_placement_spec(spec: str, rpc=(), n_ctx: int = defaults.N_CTX) -> PlacementOptions:
    """bench's "gpu", "cpu-moe", "n-cpu-moe=8", "fit" or "fit=8GiB" -> options."""
    name, _, arg = spec.partition("=")
    base = {"rpc": tuple(rpc), "n_ctx": n_ctx}
    if name == "gpu" and not arg:
        return PlacementOptions(**base)
    if name == "cpu-moe" and not arg:
        return PlacementOptions(cpu_moe=True, **base)
    if name == "n-cpu-moe" and arg.isdigit():
        return PlacementOptions(n_cpu_moe=int(arg), **base)
    if name == "fit":
        if arg:
            parse_size(arg)
        return PlacementOptions(fit=True, vram_budget=arg or None, **base)
    raise PlacementError(f"unknown placement {spec!r}: use gpu, cpu-moe, n-cpu-moe=N, fit or fit=SIZE")
