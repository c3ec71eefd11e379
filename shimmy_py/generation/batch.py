"""What one engine step works on, apart from the scheduler: a request's
token source (`BatchedSequence`), the slot serving it, and the step's batch
(`build_batch`, a pure function of the slots: one token per decoding
sequence and its drafts, then chunks of pending prompts)."""
from __future__ import annotations

import enum
import queue
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .sampling import Sampler, SamplingParams
from .speculative import DraftStats

END = object()       # queued to a sequence when its context is full
SHUTDOWN = object()  # queued to every open sequence when the server stops


def token_logprobs(logits: np.ndarray, token: int, top: int) -> tuple:
    """The sampled token's log-probability under the model's distribution
    (the raw logits' softmax, before any sampler: llama-server's default)
    and the `top` most likely tokens with theirs."""
    x = logits.astype(np.float64)
    lse = x.max() + np.log(np.exp(x - x.max()).sum())
    best = np.argpartition(-x, top)[:top] if 0 < top < len(x) else np.arange(len(x))[:top]
    best = best[np.argsort(-x[best], kind="stable")]
    return float(x[token] - lse), tuple((int(t), float(x[t] - lse)) for t in best)


class BatchedSequence:
    """One request's token source; tokens arrive from the scheduler thread."""

    def __init__(self, wake: Callable[[], None], tokens: list[int], sampling: SamplingParams, max_tokens: int,
                 logprobs: int | None = None, experts: bool = False):
        self.wake = wake                  # the scheduler's: a closed sequence frees its slot at the next step
        self.tokens, self.sampling, self.max_tokens = tokens, sampling, max_tokens
        # routing traced: every token of its own decoded (no cached prefix) with logits, so that every
        # layer routes it; per token, (MoE layers, k) ids and weights
        self.experts: list[tuple[np.ndarray, np.ndarray]] | None = [] if experts else None
        self.logprobs = logprobs          # None: off; else how many alternatives beside each sampled token
        self.token_logprobs: list = []    # (logprob, ((token, logprob), ...)) per sampled token
        self.prompt_tokens, self.cached_tokens = len(tokens), 0
        self.t_start = time.perf_counter()
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False
        self.end_reason = "length"   # why next_token() returned None: a full context, or "cancelled"
        self.draft_stats = DraftStats()   # speculative decoding: its drafted and accepted tokens

    def next_token(self) -> int | None:
        item = self.out.get()
        if isinstance(item, BaseException):
            raise item
        if item is SHUTDOWN:
            self.end_reason = "cancelled"
            return None
        return None if item is END else item

    def close(self) -> None:
        self.cancelled = True
        self.wake()


class SlotState(enum.Enum):
    PREFILL = "prefill"   # prompt tokens left to decode
    DECODE = "decode"     # a sampled token to feed back
    DONE = "done"         # finished (end of generation, max_tokens, full context); released at the next step


@dataclass
class Slot:
    """One sequence of the context serving one request."""
    seq: int
    req: BatchedSequence
    sampler: Sampler
    pending: list[int]                  # prompt tokens not yet decoded
    n_past: int = 0
    last: int | None = None            # last sampled token, to feed back
    generated: int = 0
    state: SlotState = SlotState.PREFILL
    drafts: list[int] = field(default_factory=list)   # speculative: tokens to verify after `last` this step


@dataclass
class StepBatch:
    """One llama_decode's worth of tokens; owners[i] is the slot sampled from output i."""
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    want: list[bool] = field(default_factory=list)
    owners: list = field(default_factory=list)
    slots: list = field(default_factory=list)       # the slot of each row

    def add(self, slot: Slot, token: int, sample: bool, logits: bool = False) -> None:
        """Token at the slot's next position; `sample`: the slot samples this
        row; `logits`: computed anyway (a draft, sampled after the row before)."""
        self.tokens.append(token)
        self.positions.append(slot.n_past)
        self.seqs.append(slot.seq)
        self.want.append(sample or logits or getattr(slot.req, "experts", None) is not None)   # traced: every row
        self.owners.append(slot if sample else None)
        self.slots.append(slot)
        slot.n_past += 1


def build_batch(slots, n_batch: int, prefill_chunk: int) -> StepBatch:
    """The next step's batch: first one token per decoding sequence (and its
    drafts, each with logits, owned by the first row), then chunks of pending
    prompts (at most `prefill_chunk` each) while the batch has room.
    Advances each slot's position and pending prompt."""
    batch = StepBatch()
    for slot in slots:                               # 1. one token per decoding sequence, and its drafts
        if slot.state is SlotState.DECODE:
            batch.add(slot, slot.last, True)
            for token in slot.drafts:
                batch.add(slot, token, False, logits=True)
    for slot in slots:                               # 2. chunks of prompts, as the budget allows
        budget = n_batch - len(batch.tokens)
        if not slot.pending or budget <= 0:
            continue
        chunk = slot.pending[:min(budget, prefill_chunk)]
        del slot.pending[:len(chunk)]
        for i, tok in enumerate(chunk):
            batch.add(slot, tok, not slot.pending and i == len(chunk) - 1)   # the prompt's last: sampled
    return batch


