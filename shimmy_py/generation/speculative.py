"""Speculative decoding: cheap guesses of the next tokens, checked by the
model in one llama_decode, the way llama-server's --spec-type does it.

A drafter proposes tokens to follow the last sampled one; the target decodes
the sampled token and the drafts together (one pass over the weights for k+1
tokens) and `verify` samples each position in order with the request's own
sampler, keeping drafts while they equal what was sampled (llama.cpp's
common_sampler_sample_and_accept_n). Every kept token was sampled from the
target's distribution at its position, and the sampler advances once per
emitted token, so the output is that of plain decoding: the same tokens
under greedy sampling, the same draws for a seeded sampler (up to the float
reassociation of a batched decode, as for any batching: see Model's notes).

Drafters:
- "ngram-simple" (`ngram_draft`): the tokens that followed the last time
  the current n-gram occurred in the prompt or the output (llama.cpp's
  common_ngram_simple_draft, same sizes); free to draft, pays off on text
  that repeats (code edits, quotes, a random-weight model's loops).
- "draft-simple" (`ModelDrafter`): a small model with the same vocabulary
  decodes greedily ahead (llama.cpp's draft-simple: stop below a top-1
  probability floor among its 10 best, at most draft_max tokens, drop a
  draft shorter than draft_min).
- "draft-mtp" (mtp.py): the model's own multi-token-prediction head, with
  the same limits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from ..errors import GenerationError


@dataclass
class DraftStats:
    """Drafted and accepted tokens, as llama-server counts them."""
    drafted: int = 0       # draft tokens verified
    accepted: int = 0      # of which the target kept

    def add(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted


class Drafter(Protocol):
    """Proposes tokens to follow `last` for sequence `seq`, whose KV cache
    holds `history`; at most n_max of them. `draft_many`: for every
    sequence of a step at once, (seq, history, last, n_max) each (a draft
    model or head decodes them together)."""
    def draft(self, seq: int, history: Sequence[int], last: int, n_max: int) -> list[int]: ...

    def draft_many(self, wants: Sequence[tuple[int, Sequence[int], int, int]]) -> list[list[int]]: ...


def ngram_draft(tokens: Sequence[int], sampled: int, n: int, m: int) -> list[int]:
    """llama.cpp's common_ngram_simple_draft: the last n tokens (the history's
    last n-1 and `sampled`) looked up backwards in `tokens`, skipping the
    current occurrence; the at most m tokens that followed the match, or
    nothing when fewer than n follow it."""
    cur = len(tokens)
    if cur <= n + m + 1:
        return []
    pattern = [*tokens[cur - n + 1:], sampled]
    for j in range(cur - n - 1, 0, -1):
        if tokens[j] == pattern[0] and list(tokens[j:j + n]) == pattern:
            take = min(m, cur - (j + n))
            return list(tokens[j + n:j + n + take]) if take >= n else []
    return []


class NgramDrafter:
    """ngram-simple: drafts from the sequence's own text; nothing to load."""

    def __init__(self, n: int, m: int):
        self.n, self.m = n, m

    def draft(self, seq: int, history: Sequence[int], last: int, n_max: int) -> list[int]:
        return ngram_draft(history, last, self.n, self.m)[:n_max]

    def draft_many(self, wants: Sequence[tuple[int, Sequence[int], int, int]]) -> list[list[int]]:
        return [self.draft(*want) for want in wants]


def verify(sample: Callable[[int], int], first_row: int, drafts: Sequence[int]) -> list[int]:
    """Samples the rows of a verify batch in order (row first_row holds the
    last sampled token, the drafts follow) and returns the tokens kept: each
    sample, until one differs from its draft (that sample is kept too, it
    came from the target), or one past the last draft."""
    kept = []
    for i in range(len(drafts) + 1):
        token = sample(first_row + i)
        kept.append(token)
        if i == len(drafts) or token != drafts[i]:
            break
    return kept


def choose(ctx, row: int, p_min: float) -> int | None:
    """The draft token at output `row` of a draft context (a Context or a
    ContextHandle): its most likely token, or None below the p_min floor.
    With no floor (llama.cpp's default) an argmax in place, no copy."""
    if p_min <= 0.0:
        return ctx.argmax(row)
    token, prob = top_choice(ctx.logits(row))
    return token if prob >= p_min else None


def top_choice(logits: np.ndarray, top: int = 10) -> tuple[int, float]:
    """The most likely token and its probability among the `top` best, as
    llama.cpp's draft sampler (top-k 10) measures it against p_min."""
    x = logits.astype(np.float64, copy=False)
    best = int(x.argmax())
    k = min(top, x.size)
    tops = np.partition(x, x.size - k)[x.size - k:]
    return best, float(1.0 / np.exp(tops - x[best]).sum())


@dataclass
class _Pending:
    seq: int
    want: int              # drafts still wanted
    row: int = -1          # its output row in the decode just made
    out: list[int] = field(default_factory=list)


class ModelDrafter:
    """draft-simple: a draft model's context (generation/context.py) with one
    sequence per target sequence. Before drafting, each sequence's cache is
    brought to the target's (what they share is kept, kvcache.py), then all
    drafting sequences decode one token per step together."""

    def __init__(self, context, options):
        """`options`: spec_modes.SpeculativeOptions (draft_max, draft_min, draft_p_min)."""
        self.context, self.options = context, options

    def draft(self, seq: int, history: Sequence[int], last: int, n_max: int) -> list[int]:
        return self.draft_many([(seq, history, last, n_max)])[0]

    def draft_many(self, wants: Sequence[tuple[int, Sequence[int], int, int]]) -> list[list[int]]:
        """Drafts for several sequences at once: (seq, history, last, n_max) each."""
        ctx, o = self.context, self.options
        pending, bulk, tails = [], [], []   # catch-up rows: (token, position, seq, wants logits)
        for seq, history, last, n_max in wants:
            p = _Pending(seq, min(n_max, o.draft_max, ctx.n_ctx - len(history) - 2))
            pending.append(p)
            if p.want < max(1, o.draft_min):
                p.want = 0
                continue
            full = [*history, last]
            kept = ctx.reuse(seq, full)     # at most all but `last`: its logits are the first draft's
            bulk += [(tok, kept + i, seq, False) for i, tok in enumerate(full[kept:-1])]
            tails.append((last, len(full) - 1, seq, True))
        live = [p for p in pending if p.want]
        if live:
            self._decode_rows(bulk, [])
            self._decode_rows(tails, live)     # one batch: every sequence's logits at once
            pos = {p.seq: ctx.kv.cached(p.seq) for p in live}
            while live:
                step = []
                for p in live:
                    token = choose(ctx, p.row, o.draft_p_min)
                    if token is None:
                        p.want = 0
                        continue
                    p.out.append(token)
                    if len(p.out) >= p.want:
                        continue
                    step.append((token, pos[p.seq], p.seq, True))
                    pos[p.seq] += 1
                live = [p for p in live if p.want and len(p.out) < p.want]
                if step:
                    self._decode_rows(step, live)
        return [p.out if len(p.out) >= o.draft_min else [] for p in pending]

    def _decode_rows(self, rows: list, live: list[_Pending]) -> None:
        """Decodes `rows` in batches of n_batch; each live sequence's last row
        with logits is remembered (its index in the batch, as llama_get_logits_ith takes it)."""
        ctx = self.context
        by_seq = {p.seq: p for p in live}
        for first in range(0, len(rows), ctx.n_batch):
            chunk = rows[first:first + ctx.n_batch]
            ctx.decode(*zip(*chunk))
            for i, (_, _, seq, logits) in enumerate(chunk):
                if logits and seq in by_seq:
                    by_seq[seq].row = i


def check_same_vocab(target, draft) -> None:
    """The draft model must speak the target's tokens (llama.cpp's
    common_speculative_are_compatible): the same vocabulary size (within
    128, its tolerance), BOS/EOS and the same text for every token both have."""
    tv, dv = target.vocab, draft.vocab
    problems = []
    if abs(tv.n_vocab - dv.n_vocab) > 128:
        problems.append(f"vocabulary sizes {tv.n_vocab} and {dv.n_vocab}")
    if tv.bos != dv.bos or tv.special_tokens() != dv.special_tokens():
        problems.append(f"BOS/EOS {tv.special_tokens()} and {dv.special_tokens()}")
    if not problems:
        for t in range(5, min(tv.n_vocab, dv.n_vocab)):
            if tv.token_bytes(t, True) != dv.token_bytes(t, True):
                problems.append(f"token {t} is {tv.token_bytes(t, True)!r} and {dv.token_bytes(t, True)!r}")
                break
    if problems:
        raise GenerationError(f"draft model {draft.path} does not share the vocabulary of {target.path}: "
                              f"{'; '.join(problems)}")
