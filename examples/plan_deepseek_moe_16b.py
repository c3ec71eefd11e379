"""Walks the DeepSeekMoE 16B tensor table (real shapes, shape-only file: nothing
is stored), prints four placements side by side, then loads the tiny synthetic
model with llama.cpp's RPC server as the accelerator and generates.

    python examples/plan_deepseek_moe_16b.py [WORKDIR]

Synthetic models have random weights: the text is gibberish, the compute is real.
"""
import sys
import tempfile
from pathlib import Path

import shimmy_py
from shimmy_py import PlacementOptions, make_plan
from shimmy_py.gguf_io.tensors import read_table
from shimmy_py.native import install as native
from shimmy_py.placement.plan import server_args, to_text
from shimmy_py.procs import ChildServer, free_port, listening

GiB = 2**30


def side_by_side(path: Path) -> None:
    table = read_table(path)
    total = table.total()
    print(f"{path.name}: {total.nbytes / 1e9:.1f} GB, {total.n_params / 1e9:.2f}B parameters, "
          f"{total.n_active / 1e9:.2f}B active per token")
    strategies = {"gpu": PlacementOptions(), "cpu-moe": PlacementOptions(cpu_moe=True),
                  "n-cpu-moe 8": PlacementOptions(n_cpu_moe=8),
                  "fit 8 GiB": PlacementOptions(fit=True, vram_budget="8GiB")}
    print(f"{'placement':<12} {'accelerator':>12} {'(weights)':>10} {'CPU RAM':>10}")
    for name, opts in strategies.items():
        # an 80 GiB card in a 64 GiB host, whatever this machine has: the table is about the model
        opts = PlacementOptions(**{**opts.__dict__, "target_vram": "80GiB", "device_capacity": "CPU=64GiB"})
        plan = make_plan(path, opts)
        acc, cpu = plan.device("GPU"), plan.device("CPU")
        print(f"{name:<12} {acc.total_bytes / GiB:9.2f} GiB {acc.weights_bytes / GiB:7.2f} GiB "
              f"{cpu.weights_bytes / GiB:7.2f} GiB")
    print("llama-server flags for cpu-moe:", " ".join(server_args(make_plan(
        path, PlacementOptions(cpu_moe=True, target_vram="80GiB", device_capacity="CPU=64GiB")))[4:]))


def generate_with_rpc(tiny: Path) -> None:
    port = free_port()
    argv = [str(native.tool("ggml-rpc-server")), "-H", "127.0.0.1", "-p", str(port)]
    with ChildServer(argv, lambda: listening(port), timeout_s=30):
        with shimmy_py.Model(tiny, n_ctx=512, cpu_moe=True, rpc=[f"127.0.0.1:{port}"]) as m:
            print(to_text(m.plan).split("per layer")[0])
            print(m.placement_report())
            r = m.generate("Explain the architecture of DeepSeek MoE", max_tokens=24, temperature=0)
            print(repr(r.text), f"({r.completion_tokens} tokens, {r.tokens_per_s:.0f} tok/s; random weights)")


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    big = shimmy_py.synth.write(work / "deepseek-moe-16b-f16.gguf", "deepseek-moe-16b", shape_only=True)
    side_by_side(big)
    tiny = shimmy_py.synth.write(work / "tiny.gguf", "tiny")
    generate_with_rpc(tiny)


if __name__ == "__main__":
    main()
