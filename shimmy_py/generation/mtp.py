"""draft-mtp: the model's own multi-token-prediction (NextN) head drafts,
as llama-server's --spec-type draft-mtp does (common/speculative.cpp's
common_speculative_impl_draft_mtp, single-head case).

The head is one more transformer block that reads a token x(p+1) and the
model's hidden state h(p) at the position before it, and predicts x(p+2).
It keeps a KV cache of its own (a context of type MTP over the same
weights), which must follow the target's: every batch the target decodes
is also given to the head, each token paired with the target's hidden
state of the token before it (`decoded`), and whatever the target drops
(rejected drafts, a prompt that diverges) the head drops too (`truncated`).
To draft, the head decodes the last sampled token with the hidden state of
the position before it, takes its most likely token, and goes on from its
own hidden state; its draft entries are then removed (the verify batch,
decoded by the target, gives it the real ones).

Lossless whatever the head says (speculative.verify decides); the head only
decides how many drafts are kept.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..native.context_handle import ContextHandle
from .speculative import SpeculativeOptions, choose


class MtpDrafter:
    """The MTP head's context beside a target Context (its observer)."""

    def __init__(self, head: ContextHandle, options: SpeculativeOptions, n_embd: int):
        self.head, self.options, self.n_embd = head, options, n_embd
        self.batch = head.new_ext_batch()
        self.target = None
        self._held: dict[int, int] = {}            # seq -> positions the head's cache holds (0..n-1)
        self._pending: dict[int, np.ndarray] = {}  # seq -> the target's hidden state at its last decoded position
        self._rows: dict[int, tuple[int, list]] = {}   # seq -> (first position, hidden states) of its last decode

    def attach(self, target) -> None:
        """Follows `target` (a generation Context): its decodes and truncations."""
        self.target = target
        target.observer = self

    # --- following the target ---------------------------------------------------
    def decoded(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int]) -> None:
        """The target decoded this batch: each token goes to the head with the
        hidden state of the token before it (a sequence's rows are
        consecutive in every batch this project builds)."""
        rows = self.target.native.nextn_rows(len(tokens))
        states, by_seq = [], {}
        for i, (pos, seq) in enumerate(zip(positions, seqs)):
            first = seq not in by_seq
            by_seq.setdefault(seq, (pos, []))[1].append(rows[i])
            if first:
                if self._held.get(seq, 0) != pos:     # out of step (a shared or restored prefix): start afresh
                    self.head.seq_rm(seq)
                states.append(self._pending.get(seq, np.zeros(self.n_embd, np.float32)))
            else:
                states.append(rows[i - 1])
        self._process(tokens, positions, seqs, states, [False] * len(tokens))
        for seq, (first, seq_rows) in by_seq.items():
            self._rows[seq] = (first, seq_rows)
            self._pending[seq] = seq_rows[-1]
            self._held[seq] = first + len(seq_rows)

    def truncated(self, seq: int, n: int) -> None:
        """The target keeps only positions 0..n-1 of `seq`: so does the head,
        and the hidden state of position n-1 is the one to draft from."""
        if n <= 0:
            self.head.seq_rm(seq)
            self._held[seq] = 0
            self._pending.pop(seq, None)
            return
        self.head.seq_rm(seq, n, -1)
        self._held[seq] = min(self._held.get(seq, 0), n)
        first, rows = self._rows.get(seq, (0, []))
        if first <= n - 1 < first + len(rows):
            self._pending[seq] = rows[n - 1 - first]
        elif self._held[seq] < n:
            self._pending.pop(seq, None)    # not known: the next drafts start from zeros (worse, still lossless)

    def cleared(self) -> None:
        for seq in list(self._held):
            self.truncated(seq, 0)

    # --- drafting -----------------------------------------------------------------
    def draft(self, seq: int, history: Sequence[int], last: int, n_max: int) -> list[int]:
        return self.draft_many([(seq, history, last, n_max)])[0]

    def draft_many(self, wants) -> list[list[int]]:
        """Drafts for several sequences at once: (seq, history, last, n_max) each."""
        o = self.options
        out = {seq: [] for seq, *_ in wants}
        live = {}   # seq -> [position of the next entry, tokens wanted]
        step = ([], [], [], [])  # tokens, positions, seqs, states
        for seq, history, last, n_max in wants:
            want = min(n_max, o.draft_max)
            if want < max(1, o.draft_min):
                continue
            pos = len(history)
            if self._held.get(seq, 0) != pos:       # the head is not where the target is: start afresh
                self.head.seq_rm(seq)
                self._held[seq] = 0
            live[seq] = [pos, want, pos]
            for part, value in zip(step, (last, pos, seq, self._pending.get(seq, np.zeros(self.n_embd, np.float32)))):
                part.append(value)
        while step[0]:
            self._process(*step, [True] * len(step[0]))
            order, step = step[2], ([], [], [], [])
            for row, seq in enumerate(order):
                token = choose(self.head, row, o.draft_p_min)
                pos, want, _ = live[seq]
                if token is None:
                    continue
                out[seq].append(token)
                if len(out[seq]) < want:
                    for part, value in zip(step, (token, pos + 1, seq, self.head.nextn_row(row))):
                        part.append(value)
                    live[seq][0] = pos + 1
        for seq, (_, _, start) in live.items():   # the draft entries go: the verify batch brings the real ones
            self.head.seq_rm(seq, start, -1)
        return [out[seq] if len(out[seq]) >= o.draft_min else [] for seq, *_ in wants]

    def _process(self, tokens, positions, seqs, states, outputs) -> None:
        for first in range(0, len(tokens), self.head.n_batch):
            end = first + self.head.n_batch
            self.batch.fill(tokens[first:end], positions[first:end], seqs[first:end], states[first:end],
                            outputs[first:end])
            self.head.process(self.batch)

    def close(self) -> None:
        """The head's context and batch belong to the Model, which closes them."""
