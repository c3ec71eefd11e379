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

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from ..errors import GenerationError, ShimmyError
from ..fields import opt

# llama-server's --spec-type names for what this module implements
SPEC_TYPES = ("none", "ngram-simple", "draft-simple", "draft-mtp")
SPEC_ALIASES = {"off": "none", "ngram": "ngram-simple", "draft": "draft-simple", "mtp": "draft-mtp"}


def _spec_type(value) -> str:
    name = SPEC_ALIASES.get(value, value)
    if name not in SPEC_TYPES:
        raise ShimmyError(f"speculative type {value!r}: choose one of {', '.join(SPEC_TYPES)} "
                          f"(or {', '.join(SPEC_ALIASES)})")
    return name


def _count(lo: int, what: str):
    def parse(value) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 1024:
            raise ShimmyError(f"{what} must be an integer in {lo}..1024, got {value!r}")
        return value
    return parse


def _probability(value) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ShimmyError(f"draft_p_min must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ShimmyError(f"draft_p_min must be in [0, 1], got {value!r}")
    return p


def _path(value) -> str:
    if not isinstance(value, str):
        raise ShimmyError(f"draft_model is a GGUF path, got {value!r}")
    return value


@dataclass(frozen=True)
class SpeculativeOptions:
    """Speculative decoding as llama-server's flags say it, with its defaults.
    spec_type: "none", "ngram-simple", "draft-simple" (a draft_model alone
    means draft-simple) or "draft-mtp" (the model's own NextN head, mtp.py).
    draft_max, draft_min, draft_p_min: the draft model's (or head's) longest
    draft, shortest kept draft and top-1 probability floor.
    ngram_n, ngram_m: ngram-simple's n-gram looked up and the longest m-gram
    drafted after it."""
    spec_type: str = opt("none", flags=("--spec-type",), parse=_spec_type, choices=SPEC_TYPES + tuple(SPEC_ALIASES),
                         help="speculative decoding: ngram-simple (drafts from text already seen), draft-simple "
                              "(a draft model, -md) or draft-mtp (the model's own NextN/MTP head)")
    draft_model: str = opt("", flags=("-md", "--spec-draft-model"), parse=_path, metavar="GGUF",
                           help="draft model with the target's vocabulary (implies --spec-type draft-simple)")
    draft_max: int = opt(3, flags=("--spec-draft-n-max",), parse=_count(1, "draft_max"),
                         help="most tokens the draft model drafts per step")
    draft_min: int = opt(0, flags=("--spec-draft-n-min",), parse=_count(0, "draft_min"),
                         help="a shorter draft is not verified")
    draft_p_min: float = opt(0.0, flags=("--spec-draft-p-min",), parse=_probability,
                             help="the draft model stops below this top-1 probability")
    ngram_n: int = opt(12, flags=("--spec-ngram-simple-size-n",), parse=_count(1, "ngram_n"),
                       help="ngram-simple: tokens matched")
    ngram_m: int = opt(48, flags=("--spec-ngram-simple-size-m",), parse=_count(1, "ngram_m"),
                       help="ngram-simple: most tokens drafted")

    def __post_init__(self):
        kind = _spec_type(self.spec_type)
        if kind == "none" and self.draft_model:
            kind = "draft-simple"
        object.__setattr__(self, "spec_type", kind)
        _count(1, "draft_max")(self.draft_max)
        _count(0, "draft_min")(self.draft_min)
        _probability(self.draft_p_min)
        _count(1, "ngram_n")(self.ngram_n)
        _count(1, "ngram_m")(self.ngram_m)
        if kind == "draft-simple" and not self.draft_model:
            raise ShimmyError("speculative type draft-simple needs a draft model: --spec-draft-model / -md "
                              "(draft_model in --config)")
        if kind != "draft-simple" and self.draft_model:
            raise ShimmyError(f"a draft model was given with speculative type {kind}: use draft-simple")

    @property
    def on(self) -> bool:
        return self.spec_type != "none"

    @classmethod
    def of(cls, value) -> "SpeculativeOptions":
        """A record, a type name ("ngram-simple", "off", ...) or a mapping of fields."""
        if isinstance(value, cls):
            return value
        if value is None or value is False:
            return cls()
        if isinstance(value, str):
            return cls(spec_type=value)
        if isinstance(value, dict):
            return cls(**value)
        raise ShimmyError(f"speculative= takes SpeculativeOptions, a type name or a dict, got {value!r}")


FIELDS = frozenset(f.name for f in dataclasses.fields(SpeculativeOptions))   # their flags, for commands that skip them


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
    holds `history`; at most n_max of them."""
    def draft(self, seq: int, history: Sequence[int], last: int, n_max: int) -> list[int]: ...


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

    def __init__(self, options: SpeculativeOptions):
        self.n, self.m = options.ngram_n, options.ngram_m

    def draft(self, seq: int, history: Sequence[int], last: int, n_max: int) -> list[int]:
        return ngram_draft(history, last, self.n, self.m)[:n_max]


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

    def __init__(self, context, options: SpeculativeOptions):
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
