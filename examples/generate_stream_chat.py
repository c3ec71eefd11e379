"""The Python API in five calls: generate, stream, chat, tokenize, embed.

    python examples/generate_stream_chat.py [MODEL.gguf]

Without a model it writes the tiny synthetic DeepSeekMoE (random weights: the
text is gibberish, the compute real).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import shimmy_py

model = Path(sys.argv[1]) if len(sys.argv) > 1 else \
    shimmy_py.synth.write(Path(tempfile.mkdtemp()) / "tiny.gguf", "tiny")

with shimmy_py.Model(model, n_ctx=1024) as m:
    print(m)                                                  # where the weights live
    r = m.generate("The capital of France is", max_tokens=16, temperature=0)
    print(f"generate: {r.text!r} ({r.completion_tokens} tokens, {r.finish_reason}, "
          f"TTFT {r.ttft_s * 1000:.0f} ms)")

    print("stream:   ", end="")
    for piece in m.stream("Once upon a time", max_tokens=16, temperature=0.8, seed=42):
        print(piece, end="", flush=True)
    print()

    reply = m.chat([{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Name three planets."}], max_tokens=24, temperature=0)
    print(f"chat:     {reply.text!r}")

    ids = m.tokenize("Mixture of experts")
    print(f"tokenize: {ids} -> {m.detokenize(ids)!r}")
    v = m.embed(["a cat", "a dog"])
    print(f"embed:    {v.shape}, cosine {float(v[0] @ v[1]):.3f}")
