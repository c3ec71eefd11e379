"""Which experts fire for which tokens: trace a generation from Python, print
the per-layer figures, the LRU hit-rate curve of an expert cache, and write
the pictures.

    python examples/trace_experts.py [MODEL.gguf] [OUTDIR]

Without a model it writes the tiny synthetic DeepSeekMoE (random weights:
the text is gibberish, the routing real).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import shimmy_py

out = Path(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="shimmy-trace-"))
model = Path(sys.argv[1]) if len(sys.argv) > 1 else shimmy_py.synth.write(out / "tiny.gguf", "tiny")

with shimmy_py.Model(model, n_ctx=512) as m:
    r = m.generate("Explain the architecture of DeepSeek MoE", max_tokens=32, temperature=0, trace_experts=True)

t = r.experts
print(f"ids {t.ids.shape} (tokens, MoE layers, k), weights {t.weights.shape}; "
      f"{t.n_prompt} prompt tokens, {int(t.generated.sum())} generated")
print(t.summary())
first = t.layers[0]
print(f"token by token, layer {first}:")
for piece, ids, w in list(zip(t.pieces, t.ids[:, 0], t.weights[:, 0]))[:8]:
    print(f"  {piece!r:>12} -> experts {ids.tolist()} weights {[round(float(x), 3) for x in w]}")
caps, curve = t.lru_curve()
print("LRU cache of N experts per layer, share of routings it would hold (mean over layers):")
for c, hit in zip(caps, curve.mean(axis=1)):
    print(f"  N={c:3d}: {hit:.2f}")
print("heatmap:", t.heatmap(out / "experts.png"), "->", out / "experts.png")
print("strip:  ", t.strip(out / "experts.strip.png"), "->", out / "experts.strip.png")
t.save(out / "trace.npz")
print("arrays: ", out / "trace.npz", "(shimmy_py.ExpertTrace.load reads it back)")
