"""DeepSeek-V3 (671B, 378 GB in a Q4_K mix) planned across one 80 GiB GPU and
three hosts of 256 GiB reached through llama.cpp's RPC servers, beside a
local host with 128 GiB of RAM: the planner alone, no file and no machine.
Twice: the hosts serving RAM (`--host-ram`: layers on the GPU, routed
experts spilled over the hosts by capacity), and the same servers taken as
GPUs (layers split by capacity).

    python examples/plan_deepseek_v3_multihost.py

Prints, for each strategy, what every device holds and the llama-server flags
that place the model the same way (the RPC devices stand for
`--rpc host1:50052,host2:50052,host3:50052`).
"""
from __future__ import annotations

from shimmy_py.placement.plan import CPU, DeviceSpec, PlanRequest, server_args
from shimmy_py.placement.planner import plan
from shimmy_py.synthetic.shapes import deepseek_v3_table

GiB = 2**30
def devices(remote_kind: str) -> list[DeviceSpec]:
    return [DeviceSpec(CPU, "cpu", 128 * GiB, CPU), DeviceSpec("CUDA0", "accelerator", 80 * GiB, "CUDA0"),
            *[DeviceSpec(f"RPC{i}", remote_kind, 256 * GiB, f"RPC{i}") for i in range(3)]]


def main() -> None:
    table = deepseek_v3_table()
    total = table.total()
    print(f"DeepSeek-V3: {total.nbytes / 1e9:.0f} GB, {total.n_params / 1e9:.0f}B parameters, "
          f"{total.n_active / 1e9:.1f}B active per token; context 8192")
    names = [d.name for d in devices("host")]
    print(f"| RPC servers as | strategy | {' | '.join(names)} | network per token |")
    print(f"|---|---|{'---|' * len(names)}---|")
    for kind, label in (("host", "host RAM"), ("accelerator", "GPUs")):
        for strategy in ("cpu-moe", "fit"):
            p = plan(table, devices(kind), PlanRequest(strategy, n_ctx=8192))
            cells = [f"{d.total_bytes / GiB:.1f} GiB" for d in p.devices]
            print(f"| {label} | {strategy} | {' | '.join(cells)} | {p.network_bytes_per_token / 1024:.0f} KiB |")
    p = plan(table, devices("host"), PlanRequest("fit", n_ctx=8192))
    args = server_args(p)
    print("\nhost RAM, fit: llama-server", " ".join(a if len(a) < 100 else a[:97] + "..." for a in args[2:]))


if __name__ == "__main__":
    main()
