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
from .speculative import choose


class MtpDrafter:
    """The MTP head's context beside a target Context (its observer)."""

    def __init__(self, head: ContextHandle, options, n_embd: int):
        """`options`: spec_modes.SpeculativeOptions (draft_max, draft_min, draft_p_min)."""
        self.head, self.options, self.n_embd = head, options, n_embd
        self.batch = head.new_ext_batch()
        self.target = None
        self._held: dict[int, int] = {}                # seq -> positions the head's cache holds (0..n-1)
        self._rows: dict[int, tuple[int, list]] = {}   # seq -> (first position, the target's hidden states from
        #                                                there to the last position its cache holds)

    def set_threads(self, n: int) -> None:
        self.head.set_threads(n)

    def close(self) -> None:
        """Frees its batch, then the head's context. Safe to call twice."""
        self.batch.close()
        self.head.close()

    def attach(self, target) -> None:
        """Follows `target` (a generation Context): its decodes and truncations."""
        self.target = target
        target.observer = self

    def _state_before(self, seq: int) -> np.ndarray:
        """The target's hidden state at the position before `seq`'s next
        token (zeros where unknown: worse drafts, the same output)."""
        _, rows = self._rows.get(seq, (0, []))
        return rows[-1] if rows else np.zeros(self.n_embd, np.float32)

    # --- following the target ---------------------------------------------------
    def decoded(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int]) -> None:
        """The target decoded this batch: each token goes to the head with the
        hidden state of the token before it (a sequence's rows are
        consecutive in every batch this project builds)."""
        rows = self.target.native.nextn_rows(len(tokens))
        entries, by_seq = [], {}
        for i, (token, pos, seq) in enumerate(zip(tokens, positions, seqs)):
            if seq not in by_seq:
                if self._held.get(seq, 0) != pos:     # out of step (a shared or restored prefix): start afresh
                    self.head.seq_rm(seq)
                state = self._state_before(seq)
                by_seq[seq] = (pos, [])
            else:
                state = rows[i - 1]
            by_seq[seq][1].append(rows[i])
            entries.append((token, pos, seq, state))
        self._process(entries, outputs=False)
        for seq, (first, seq_rows) in by_seq.items():
            self._rows[seq] = (first, seq_rows)
            self._held[seq] = first + len(seq_rows)

    def truncated(self, seq: int, n: int) -> None:
        """The target keeps only positions 0..n-1 of `seq`: so does the head,
        and the hidden state of position n-1 is the one to draft from."""
        self.head.seq_rm(seq, max(n, 0), -1)
        self._held[seq] = min(self._held.get(seq, 0), max(n, 0))
        first, rows = self._rows.pop(seq, (0, []))
        kept = rows[:n - first] if n > first else []
        if kept and first + len(kept) == n:        # position n-1's state is known
            self._rows[seq] = (first, kept)

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
        starts, want = {}, {}
        entries = []   # (token, position, seq, hidden state) for the head's next decode
        for seq, history, last, n_max in wants:
            n = min(n_max, o.draft_max)
            if n < max(1, o.draft_min):
                continue
            start = len(history)
            if self._held.get(seq, 0) != start:       # the head is not where the target is: start afresh
                self.head.seq_rm(seq)
                self._held[seq] = 0
            starts[seq], want[seq] = start, n
            entries.append((last, start, seq, self._state_before(seq)))
        while entries:
            self._process(entries, outputs=True)
            decoded, entries = entries, []
            for row, (_, _, seq, _) in enumerate(decoded):
                token = choose(self.head, row, o.draft_p_min)
                if token is None:
                    continue
                out[seq].append(token)
                if len(out[seq]) < want[seq]:
                    entries.append((token, starts[seq] + len(out[seq]), seq, self.head.nextn_row(row)))
        for seq, start in starts.items():     # the draft entries go: the verify batch brings the real ones
            self.head.seq_rm(seq, start, -1)
        return [out[seq] if len(out[seq]) >= o.draft_min else [] for seq, *_ in wants]

    def _process(self, entries: list, outputs: bool) -> None:
        for first in range(0, len(entries), self.head.n_batch):
            tokens, positions, seqs, states = zip(*entries[first:first + self.head.n_batch])
            self.batch.fill(tokens, positions, seqs, states, [outputs] * len(tokens))
            self.head.process(self.batch)
