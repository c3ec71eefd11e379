"""The placement options as one record (`PlacementOptions`) and its strategy
(`Strategy`: gpu, cpu-moe, n-cpu-moe N, fit with an optional budget, or an
explicit Plan), with the parsing of what users type: sizes ("8GiB"),
llama.cpp's `-ot` syntax, strategy specs ("n-cpu-moe=8", "fit=8GiB"), RPC
endpoints and device capacities. Each field describes its flag and its
`--config` key (fields.py), so the CLI, config files, the Python API and the
server's worker all build and carry this one record; every value is checked
when the record is made."""
from __future__ import annotations

import os
from dataclasses import InitVar, dataclass, replace
from typing import Any

from .. import defaults
from ..errors import PlacementError
from ..fields import Shortcut, opt
from ..sizes import parse_size
from .plan import Plan, PlanRequest
from .strategies import KINDS, USAGE, budgeted
from .tiers import ExpertProfile

STREAM_METHODS = ("fadvise", "pread", "own")   # the first is the default


def parse_override_arg(text: str) -> list[tuple[str, str]]:
    """llama.cpp's `-ot` syntax: PATTERN=BUFFER_TYPE[,PATTERN=BUFFER_TYPE...]."""
    if not isinstance(text, str):
        raise PlacementError(f"-ot {text!r}: expected PATTERN=BUFFER_TYPE text")
    out = []
    for item in text.split(","):
        pattern, sep, target = item.rpartition("=")
        if not sep or not pattern or not target:
            raise PlacementError(f"-ot {item!r}: expected PATTERN=BUFFER_TYPE")
        out.append((pattern, target))
    return out


def _override_pairs(items) -> tuple[tuple[str, str], ...]:
    """-ot values as (pattern, buffer type) pairs: strings in llama.cpp's
    syntax, pairs, or lists of either."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            out += parse_override_arg(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append((item[0], item[1]))
        elif isinstance(item, (tuple, list)):
            out += _override_pairs(item)
        else:
            raise PlacementError(f"-ot {item!r}: expected PATTERN=BUFFER_TYPE text")
    return tuple(out)


def parse_endpoints(value) -> tuple[str, ...]:
    """RPC servers: "HOST:PORT[,HOST:PORT]" or a list of HOST:PORT."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise PlacementError(f"expected HOST:PORT[,HOST:PORT], got {value!r}")
    out = tuple(x.strip() for x in items if x.strip())
    for endpoint in out:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise PlacementError(f"RPC server {endpoint!r}: expected HOST:PORT")
    return out


def parse_capacity_arg(value) -> tuple[tuple[str, int], ...]:
    """--device-capacity NAME=SIZE[,NAME=SIZE], a (name, size) pair, or a
    {name: size} table, as (name, bytes) pairs."""
    if isinstance(value, dict):
        return tuple((str(k), parse_size(v)) for k, v in value.items())
    if _is_pair(value):
        return ((value[0], parse_size(value[1])),)
    if isinstance(value, (tuple, list)):
        return tuple(pair for item in value for pair in parse_capacity_arg(item))
    if not isinstance(value, str):
        raise PlacementError(f"--device-capacity {value!r}: expected NAME=SIZE, e.g. RPC0=24GiB")
    out = []
    for item in (x for x in value.split(",") if x):
        name, sep, size = item.rpartition("=")
        if not sep or not name:
            raise PlacementError(f"--device-capacity {item!r}: expected NAME=SIZE, e.g. RPC0=24GiB")
        out.append((name, parse_size(size)))
    return tuple(out)


def _is_pair(value) -> bool:
    """("RPC0", "8GiB") or ("RPC0", 8589934592), not two "NAME=SIZE" strings."""
    return isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str) \
        and "=" not in value[0] and (isinstance(value[1], int) or isinstance(value[1], str) and "=" not in value[1])


def parse_capacities(items) -> dict:
    """--device-capacity NAME=SIZE (repeatable, or comma-separated) as {name: bytes}."""
    return dict(parse_capacity_arg(items if isinstance(items, dict) else tuple(items)))


@dataclass(frozen=True)
class Strategy:
    """Where routed experts go: "gpu" (nowhere else), "cpu-moe" (all in host
    RAM), "n-cpu-moe" (those of layers 0..n_cpu_moe-1), "fit" (as many stay on
    each accelerator as its budget holds; vram_budget, or its free memory less
    a margin), or "plan" (an explicit Plan, loaded as planned)."""
    name: str = "gpu"
    n_cpu_moe: int = 0
    vram_budget: int | None = None
    plan: Plan | None = None

    def __post_init__(self):
        if self.name not in (*KINDS, "plan"):
            raise PlacementError(f"unknown strategy {self.name!r}: use {USAGE}")
        if isinstance(self.n_cpu_moe, bool) or not isinstance(self.n_cpu_moe, int) or self.n_cpu_moe < 0:
            raise PlacementError(f"--n-cpu-moe must be a layer count >= 0, got {self.n_cpu_moe!r}")
        if self.vram_budget is not None:
            if not budgeted(self.name):
                raise PlacementError("--vram-budget is a budget for --fit; add --fit")
            object.__setattr__(self, "vram_budget", parse_size(self.vram_budget))
            if self.vram_budget <= 0:
                raise PlacementError(f"--vram-budget must be positive, got {self.vram_budget}")
        if (self.plan is not None) != (self.name == "plan"):
            raise PlacementError("strategy 'plan' is an explicit Plan: give one (Strategy.explicit(plan))")

    @classmethod
    def parse(cls, spec: Any) -> Strategy:
        """"gpu", "cpu-moe", "n-cpu-moe=8", "fit" or "fit=8GiB" (or a Strategy, or a Plan)."""
        if isinstance(spec, Strategy):
            return spec
        if isinstance(spec, Plan):
            return cls.explicit(spec)
        if not isinstance(spec, str):
            raise PlacementError(f"strategy {spec!r}: use {USAGE}")
        name, _, arg = spec.strip().partition("=")
        fields = KINDS[name].parse(arg) if name in KINDS else None
        if fields is None:
            raise PlacementError(f"unknown placement {spec!r}: use {USAGE}")
        return cls(name, **fields)

    @classmethod
    def explicit(cls, plan: Plan) -> Strategy:
        return cls("plan", plan=plan)

    def __str__(self) -> str:
        return KINDS[self.name].text(self.n_cpu_moe, self.vram_budget) if self.name in KINDS else self.name


def _flag_bool(value, flag: str) -> bool:
    if not isinstance(value, bool):
        raise PlacementError(f"{flag} is true or false, got {value!r}")
    return value


def _count(value, flag: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PlacementError(f"{flag} must be a layer count >= 0, got {value!r}")
    return value


SHORTCUTS = {   # llama.cpp's flags for the strategy (and --config keys of the same names)
    "cpu_moe": Shortcut("--cpu-moe", "all routed experts in CPU RAM"),
    "n_cpu_moe": Shortcut("--n-cpu-moe", "routed experts of layers 0..N-1 in CPU RAM", "N"),
    "fit": Shortcut("--fit", "keep as many experts on the accelerator as fit"),
    "vram_budget": Shortcut("--vram-budget", "budget for --fit, e.g. 8GiB (default: free memory less a margin)",
                            "SIZE"),
}


def fold_shortcuts(current: Strategy, given: dict) -> Strategy:
    """The strategy that --cpu-moe, --n-cpu-moe N, --fit and --vram-budget
    SIZE (or their keys) make of `current` (set by --strategy, or the
    default); two strategies at once are refused."""
    chosen = [(f"--strategy {current}", current)] if current != Strategy() else []
    if "cpu_moe" in given and _flag_bool(given["cpu_moe"], "--cpu-moe"):
        chosen.append(("--cpu-moe", Strategy("cpu-moe")))
    if given.get("n_cpu_moe") is not None:
        chosen.append(("--n-cpu-moe", Strategy("n-cpu-moe", _count(given["n_cpu_moe"], "--n-cpu-moe"))))
    if "fit" in given and _flag_bool(given["fit"], "--fit") and current.name != "fit":
        chosen.append(("--fit", Strategy("fit")))
    names = [n for n, _ in chosen]
    if len(chosen) > 1:
        raise PlacementError(f"choose one strategy, not {' and '.join(names)}")
    strategy = chosen[0][1] if chosen else Strategy()
    if given.get("vram_budget") is not None:
        if not budgeted(strategy.name):
            raise PlacementError("--vram-budget is a budget for --fit; add --fit")
        strategy = replace(strategy, vram_budget=parse_size(given["vram_budget"]))
    return strategy


@dataclass(frozen=True)
class PlacementOptions:
    """Where a model's weights go, as one record. cpu_moe, n_cpu_moe, fit and
    vram_budget are accepted as shortcuts that build the strategy."""
    strategy: Strategy = opt(Strategy(), flags=("--strategy",), parse=Strategy.parse, metavar="SPEC",
                             help="gpu, cpu-moe, n-cpu-moe=N, fit or fit=SIZE (llama.cpp's flags below say the same)",
                             shortcuts=SHORTCUTS, fold=fold_shortcuts)
    overrides: tuple = opt((), flags=("-ot", "--override-tensor"), repeat=True, parse=parse_override_arg,
                           metavar="PATTERN=BUFFER_TYPE",
                           help="llama.cpp tensor override, comma-separated, first match wins (repeatable)")
    rpc: tuple = opt((), flags=("--rpc",), parse=parse_endpoints, metavar="HOST:PORT[,HOST:PORT]",
                     help="llama.cpp RPC servers to use")
    host_ram: tuple = opt((), flags=("--host-ram",), parse=parse_endpoints, metavar="HOST:PORT[,HOST:PORT]",
                          help="RPC servers serving their host's RAM: routed experts spill there by capacity")
    device_capacity: tuple = opt((), flags=("--device-capacity",), repeat=True, parse=parse_capacity_arg,
                                 metavar="NAME=SIZE",
                                 help="plan device NAME (CPU, CUDA0, RPC1, ...) for SIZE instead of its free memory "
                                      "(repeatable)")
    measure_reserve: bool | None = opt(None, flags=("--measure-reserve",), switch=True,
                                       help="measure the compute reserve by a dry run of llama.cpp instead of "
                                            "estimating it (default: under --fit, for architectures whose estimate "
                                            "is unchecked)")
    target_vram: int | None = opt(None, flags=("--target-vram",), parse=parse_size, metavar="SIZE", key="",
                                  help="plan for a hypothetical accelerator of SIZE")
    ram_budget: int | None = opt(None, flags=("--ram-budget",), parse=parse_size, metavar="SIZE",
                                 help="host RAM the plan may hold (weights, KV cache, reserve); past it, routed "
                                      "experts stream from the file (default: available RAM less a margin)")
    stream_method: str = opt("fadvise", flags=("--stream-method",), metavar="METHOD",
                             help="how streamed experts are read ahead of the matmul: fadvise (default: the kernel "
                                  "reads them, WILLNEED), pread (8 threads read them into the page cache) or own (8 "
                                  "threads read them with O_DIRECT into the streamer's own memory, outside the page "
                                  "cache); docs/STREAMING.md measures each")
    expert_profile: str | None = opt(None, flags=("--expert-profile",), metavar="TRACE.npz",
                                     help="a `shimmy-py trace --out` file: its most routed experts stay resident "
                                          "when experts stream from the file")
    n_ctx: int = defaults.N_CTX        # the context planned for: the KV cache (Model and serve set it)
    n_seq: int = 1                     # sequences decoded together (the server's --parallel)
    flash_attn: bool = True            # False when the context turns it off: the reserve holds attention scores
    fit_margin: bool = True            # False: the capacities are budgets already (the server's admission)
    mtp: bool = False                  # the NextN/MTP block loads too (speculative draft-mtp)
    cpu_moe: InitVar[bool] = False
    n_cpu_moe: InitVar[int | None] = None
    fit: InitVar[bool] = False
    vram_budget: InitVar[int | str | None] = None

    def __post_init__(self, cpu_moe, n_cpu_moe, fit, vram_budget):
        given = {k: v for k, v in (("cpu_moe", cpu_moe), ("n_cpu_moe", n_cpu_moe), ("fit", fit),
                                   ("vram_budget", vram_budget)) if v is not None and v is not False}
        strategy = Strategy.parse(self.strategy)
        normal = {"strategy": fold_shortcuts(strategy, given) if given else strategy,
                  "overrides": _override_pairs(self.overrides), "rpc": parse_endpoints(self.rpc),
                  "host_ram": parse_endpoints(self.host_ram),
                  "device_capacity": parse_capacity_arg(self.device_capacity),
                  "target_vram": None if self.target_vram is None else parse_size(self.target_vram),
                  "ram_budget": None if self.ram_budget is None else parse_size(self.ram_budget)}
        for name, value in normal.items():
            object.__setattr__(self, name, value)
        if isinstance(self.n_ctx, bool) or not isinstance(self.n_ctx, int) or self.n_ctx < 1:
            raise PlacementError(f"context length must be >= 1, got {self.n_ctx!r}")
        if self.stream_method not in STREAM_METHODS:
            raise PlacementError(f"--stream-method {self.stream_method!r}: use {', '.join(STREAM_METHODS)}")
        if self.ram_budget is not None and self.ram_budget <= 0:
            raise PlacementError(f"--ram-budget must be positive, got {self.ram_budget}")
        if self.expert_profile is not None and not isinstance(self.expert_profile, (str, os.PathLike)):
            raise PlacementError(f"--expert-profile is a file path, got {self.expert_profile!r}")

    def request(self) -> PlanRequest:
        s = self.strategy
        if s.name == "plan":
            return s.plan.request
        profile = ExpertProfile.load(self.expert_profile) if self.expert_profile is not None else None
        return PlanRequest(s.name, s.n_cpu_moe, s.vram_budget, self.overrides, self.n_ctx,
                           flash_attn=self.flash_attn, fit_margin=self.fit_margin, n_seq=self.n_seq, mtp=self.mtp,
                           ram_budget=self.ram_budget, expert_profile=profile)


def parse_placement_spec(spec: str, rpc=(), n_ctx: int = defaults.N_CTX) -> PlacementOptions:
    """bench's "gpu", "cpu-moe", "n-cpu-moe=8", "fit" or "fit=8GiB" -> options."""
    return PlacementOptions(Strategy.parse(spec), rpc=tuple(rpc), n_ctx=n_ctx)
