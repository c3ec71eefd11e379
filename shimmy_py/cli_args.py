"""What the command line's parsed flags mean to the package: model folders,
RPC servers and placement options (shared by cli.py and cli_serve.py)."""
from __future__ import annotations


def model_dirs(args) -> list[str]:
    """--model-dirs "DIR;DIR" as a list."""
    return [d for d in args.model_dirs.split(";") if d]


def rpc_list(args) -> tuple[str, ...]:
    """--rpc HOST:PORT[,HOST:PORT] as a tuple."""
    return tuple(s for s in args.rpc.split(",") if s)


def placement_options(args, target_vram=None):
    """The placement flags of `args` as PlacementOptions."""
    from .placement.options import PlacementOptions
    return PlacementOptions(args.cpu_moe, args.n_cpu_moe, args.fit, args.vram_budget,
                            tuple(args.override_tensor), rpc_list(args), target_vram, args.ctx,
                            tuple(args.device_capacity), getattr(args, "flash_attn", "auto") != "off",
                            tuple(h for h in getattr(args, "host_ram", "").split(",") if h),
                            measure_reserve=getattr(args, "measure_reserve", None))
