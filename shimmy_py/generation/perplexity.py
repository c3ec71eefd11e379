"""Perplexity of a text, computed as llama.cpp's `llama-perplexity` computes
it (tools/perplexity/perplexity.cpp, its default mode), so that the two
figures can be set side by side: the text tokenized with BOS; cut into
chunks of n_ctx tokens (a last partial chunk is dropped); each chunk's first
token replaced by BOS (where the model adds one); n_batch / n_ctx chunks decoded together, one sequence
each, in a KV cache per sequence; the second half of each chunk scored
(positions n_ctx/2 .. n_ctx-2 predicting the next token); the log-softmax
with a float32 max and exponentials summed in float64.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import GenerationError


@dataclass(frozen=True)
class Perplexity:
    ppl: float                   # exp(mean negative log-likelihood)
    nll: float                   # the mean, in nats per token
    count: int                   # tokens scored
    chunks: int
    running: tuple[float, ...]   # the figure after each chunk, as llama-perplexity prints [1]..[n]


def options_for(n_ctx: int, n_batch: int = 2048, **kwargs):
    """The ModelOptions llama-perplexity makes for -c n_ctx -b n_batch: a
    sequence per chunk decoded together (n_batch / n_ctx of them), each with its own cache."""
    from .options import ModelOptions
    n_seq = max(1, n_batch // n_ctx)
    return ModelOptions(n_ctx=n_seq * n_ctx, n_batch=min(n_batch, n_seq * n_ctx), n_seq_max=n_seq,
                        kv_unified=False, **kwargs)


def token_nll(logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """-log softmax(logits[i])[tokens[i]] per row, as perplexity.cpp's log_softmax."""
    top = logits.max(axis=1, keepdims=True)
    sums = np.exp(logits - top, dtype=np.float32).sum(axis=1, dtype=np.float64)
    picked = logits[np.arange(len(tokens)), tokens] - top[:, 0]
    return -(picked.astype(np.float64) - np.log(sums))


def perplexity(model, text: str, n_ctx: int = 512) -> Perplexity:
    """The perplexity of `text` under `model` (a generation.Model loaded with
    options_for(n_ctx)), chunk by chunk as llama-perplexity."""
    context = model.context
    if context is None:
        raise GenerationError("perplexity needs a model loaded with its weights and a context")
    n_seq, n_batch = context.n_seq_max, context.n_batch
    bos = model.bos if model.handle.adds_bos_eos[0] else None      # a model that adds no BOS keeps its first token
    if context.n_ctx < n_ctx:
        raise GenerationError(f"perplexity at n_ctx {n_ctx} needs a model loaded with options_for({n_ctx})")
    tokens = model.tokenize(text)
    n_chunk = len(tokens) // n_ctx
    if len(tokens) < 2 * n_ctx:
        raise GenerationError(f"the text tokenizes to {len(tokens)} tokens; perplexity at a context of "
                              f"{n_ctx} needs at least {2 * n_ctx}")
    first, total, count, running = n_ctx // 2, 0.0, 0, []
    with context.session() as ctx:
        for i in range(0, n_chunk, n_seq):
            group = range(i, min(i + n_seq, n_chunk))
            ctx.clear()
            rows = _decode_group(ctx, tokens, group, n_ctx, min(n_batch, n_ctx), bos)
            for s, chunk in enumerate(group):
                target = tokens[chunk * n_ctx + first + 1:(chunk + 1) * n_ctx]
                total += float(token_nll(np.stack(rows[s][:len(target)]), target).sum())
                count += len(target)
                running.append(math.exp(total / count))
    return Perplexity(math.exp(total / count), total / count, count, n_chunk, tuple(running))


def _decode_group(ctx, tokens, group, n_ctx: int, step: int, bos: int | None) -> list[list[np.ndarray]]:
    """Decodes the chunks of `group` together, one sequence each, `step`
    positions of each per decode (llama-perplexity's n_batch / n_seq);
    returns each sequence's logits at positions n_ctx/2 onwards."""
    first = n_ctx // 2
    rows: list[list[np.ndarray]] = [[] for _ in group]
    for at in range(0, n_ctx, step):
        span = range(at, min(at + step, n_ctx))
        toks, pos, seqs, want = [], [], [], []
        for s, chunk in enumerate(group):
            piece = [tokens[chunk * n_ctx + p] for p in span]
            if at == 0 and bos is not None:
                piece[0] = bos
            toks += piece
            pos += span
            seqs += [s] * len(span)
            want += [p >= first for p in span]
        ctx.decode(toks, pos, seqs, want)
        for s in range(len(group)):
            rows[s] += [ctx.logits(s * len(span) + k) for k, p in enumerate(span) if p >= first]
    return rows


def of_file(path: str | os.PathLike, text: str, n_ctx: int = 512, **options) -> Perplexity:
    """Loads the model at `path` as llama-perplexity would and measures `text`."""
    from .model import Model
    with Model(path, options_for(n_ctx, **options)) as model:
        return perplexity(model, text, n_ctx)
