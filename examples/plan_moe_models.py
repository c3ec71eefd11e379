"""The MoE models people run, planned for a 24 GiB and an 80 GiB card: what
each strategy puts on the card (weights + KV cache + reserve) and in host RAM.

    python examples/plan_moe_models.py [WORKDIR]

Writes shape-only files (sparse: nothing is stored) typed as llama.cpp's
quantizer types them (`llama-quantize --dry-run`; Q4_K_M, and gpt-oss as its
MXFP4 downloads are) and DeepSeekMoE 16B in F16; context 8192. Needs the native
build (llama-quantize). "-" marks a strategy whose minimum does not fit.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from shimmy_py import PlacementError, synth
from shimmy_py.gguf_io.tensors import read_table
from shimmy_py.placement.plan import CPU, DeviceSpec, PlanRequest
from shimmy_py.placement.planner import plan
from shimmy_py.synthetic import shapes

GiB = 2**30
HOST = DeviceSpec(CPU, "cpu", 1024 * GiB, CPU)


def tables(work: Path):
    yield "deepseek-moe-16b (F16)", read_table(synth.write(work / "ds16b.gguf", "deepseek-moe-16b", shape_only=True))
    for name in shapes.REAL:
        quant = shapes.DEFAULT_QUANT.get(name, "Q4_K_M")
        yield f"{name} ({quant})", read_table(shapes.write_real(work / f"{name}.gguf", name, quant))


def cell(table, strategy: str, card: int) -> str:
    devices = [HOST, DeviceSpec("GPU", "accelerator", card * GiB, "GPU")]
    try:
        p = plan(table, devices, PlanRequest(strategy, n_ctx=8192))
    except PlacementError:
        return "-"
    gpu, cpu = p.device("GPU"), p.device(CPU)
    over = "!" if gpu.total_bytes > card * GiB else ""
    return f"{gpu.total_bytes / GiB:.1f}{over} / {cpu.weights_bytes / GiB:.1f}"


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    print("| model | size GB | params (active) | " +
          " | ".join(f"{s} {c} GiB" for c in (24, 80) for s in ("gpu", "cpu-moe", "fit")) + " |")
    print("|---|---|---|" + "---|" * 6)
    for label, table in tables(work):
        total = table.total()
        cells = [cell(table, s, c) for c in (24, 80) for s in ("gpu", "cpu-moe", "fit")]
        print(f"| {label} | {total.nbytes / 1e9:.1f} | {total.n_params / 1e9:.1f}B ({total.n_active / 1e9:.1f}B) | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
