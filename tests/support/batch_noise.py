"""How much a sequence's logits move when it decodes batched instead of alone,
and whether the greedy choices of a test stand far above that.

On the default build llama.cpp's matrix products take llamafile's tinyBLAS for
batches of 2+ columns and ggml's own kernels for one column: the same logits
come out rounded differently, and a near-tie in an MoE router can pick
another expert. A test comparing greedy tokens decoded alone and batched
proves something only where every chosen token led the runner-up by far more
than its logits moved between the two ways of decoding that very sequence;
`assert_decisive` measures both and checks it. On a `--batch-invariant` build
the two ways agree bit for bit.
"""
from __future__ import annotations

import numpy as np

# The context the comparing tests run under. With llama.cpp's defaults (F16 KV
# cache, flash attention on the CPU) attention rounds through F16 and logits
# move by ~1e-3 between batched and single-token decoding, as large as the
# leads of many greedy choices of a random-weight model; with an F32 cache and
# flash attention off only float32 reassociation is left (~1e-6).
EXACT = {"kv_type": "f32", "flash_attn": "off"}
EXACT_LLAMA_ARGS = ["-ctk", "f32", "-ctv", "f32", "-fa", "off"]
EXACT_CLI_ARGS = ["--kv-type", "f32", "--flash-attn", "off"]

SAFETY = 10   # a greedy choice must lead by this many times what batching moved its logits


def logits_both_ways(model, tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Logits at every position of `tokens`: decoded as one batch, and one token at a time."""
    batched = model.eval_logits(tokens)
    with model.context.session() as c:
        c.clear()
        alone = []
        for pos, tok in enumerate(tokens):
            c.step(tok, pos)
            alone.append(c.logits(-1))
        c.clear()
    return batched, np.stack(alone)


def spread(model, tokens: list[int]) -> float:
    """Max |logit| difference between `tokens` decoded as one batch and one at a time."""
    batched, alone = logits_both_ways(model, tokens)
    return float(np.abs(batched - alone).max())


def _leads(logits: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Each chosen token's logit lead over the best other token (negative: not the argmax)."""
    rows = np.arange(len(chosen))
    picked = logits[rows, chosen].copy()
    others = logits.copy()
    others[rows, chosen] = -np.inf
    return picked - others.max(axis=1)


def assert_decisive(model, prompt: list[int], generated: list[int]) -> float:
    """Asserts that each greedy token of `generated` (after `prompt`) led by
    SAFETY x the largest logit movement between batched and single-token
    decoding of this sequence; returns the smallest lead."""
    batched, alone = logits_both_ways(model, prompt + generated[:-1])
    batched, alone = batched[len(prompt) - 1:], alone[len(prompt) - 1:]
    moved = float(np.abs(batched - alone).max())
    lead = float(min(_leads(alone, generated).min(), _leads(batched, generated).min()))
    assert lead > SAFETY * moved, (f"a greedy choice led by only {lead:.3g}, not {SAFETY} x the {moved:.3g} its "
                                   "logits move with batching: this comparison cannot tell kernels from bugs")
    return lead
