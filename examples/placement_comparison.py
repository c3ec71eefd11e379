"""Accelerator memory against decode speed, per placement strategy: the
table of the model card this project started from (all on the GPU: 30.1 GB,
26.8 tok/s; experts on the CPU: 2.3 GB, 6.5 tok/s), measured on your machine.

    python examples/placement_comparison.py [MODEL.gguf] [--rpc HOST:PORT] [--plot out.png]

The accelerator is the first GPU, or with --rpc a ggml-rpc-server (the
stand-in on machines without one). Without a model it writes the tiny
synthetic DeepSeekMoE. The plot needs matplotlib (pip install matplotlib);
without it the table is printed and the plot skipped with a message.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import shimmy_py
from shimmy_py.bench import run_bench
from shimmy_py.gguf_io.reader import read_header

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("model", nargs="?")
ap.add_argument("--rpc", action="append", default=[], help="host:port of a ggml-rpc-server")
ap.add_argument("--plot", help="write a PNG of memory against speed (needs matplotlib)")
ap.add_argument("-n", type=int, default=32, help="tokens generated per run")
a = ap.parse_args()
model = a.model or shimmy_py.synth.write(Path(tempfile.mkdtemp()) / "tiny.gguf", "tiny")

half = (read_header(model).arch_key("block_count") + 1) // 2      # the first half of the layers' experts on the CPU
results = run_bench(str(model), ["gpu", f"n-cpu-moe={half}", "cpu-moe"], n_prompt=64, n_gen=a.n, reps=2, rpc=a.rpc)
print("| strategy | on the accelerator | host RAM | decode tok/s | TTFT ms |")
print("|---|---|---|---|---|")
rows = []
for r in results:
    accel = sum(b for dev, b in r.devices.items() if dev != "CPU")
    host = r.devices.get("CPU", 0)
    rows.append((r.placement, accel, r.decode_tps))
    print(f"| {r.placement} | {accel / 2**20:.1f} MiB | {host / 2**20:.1f} MiB | {r.decode_tps:.1f} | "
          f"{r.ttft_s * 1000:.0f} |")
if not a.rpc:
    print("(no accelerator named: without a GPU every strategy keeps its weights on the CPU; pass --rpc "
          "HOST:PORT of a ggml-rpc-server to see the split)")
if a.plot:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install matplotlib (the table above has the same numbers)")
    else:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, accel, tps in rows:
            ax.scatter(accel / 2**20, tps)
            ax.annotate(name, (accel / 2**20, tps))
        ax.set_xlabel("weights on the accelerator (MiB)")
        ax.set_ylabel("decode tok/s")
        fig.tight_layout()
        fig.savefig(a.plot)
        print(f"wrote {a.plot}")
