"""Generation in the caller's thread, with no engine between: the token source
of the Python API and the CLI (the server's is engine.py). It reuses
what the KV cache of sequence 0 holds from the previous generation
(kvcache.py), prefills the rest, then decodes one token per call, or, with
a drafter (speculative.py), the sampled token and its drafts in one decode,
handing out the tokens kept one per call."""
from __future__ import annotations

import collections
import time

from .context import Context
from .experts import ExpertRecorder, tap_names
from .sampling import SamplingParams, build_sampler
from .speculative import Drafter, DraftStats, verify


class InlineSequence:
    """A token source that holds the context from its first token until closed."""

    def __init__(self, context: Context, tokens: list[int], sampling: SamplingParams,
                 recorder: ExpertRecorder | None = None, drafter: Drafter | None = None,
                 max_tokens: int | None = None):
        self.context, self.tokens, self.sampling = context, tokens, sampling
        self.recorder = recorder   # routing traced: on a context with a tap, every token routed
        # speculative decoding, not while tracing (the trace would hold the rejected drafts' routing)
        self.drafter = drafter if recorder is None else None
        self.max_tokens = max_tokens
        self.draft_stats = DraftStats()
        self._ready: collections.deque[int] = collections.deque()   # kept tokens not handed out yet
        self._given = 0
        self.prompt_tokens, self.cached_tokens = len(tokens), 0
        self.t_start = time.perf_counter()
        self._session = self._sampler = None
        self._last = self._n_past = None

    def next_token(self) -> int | None:
        if self._ready:
            return self._give(self._ready.popleft())
        ctx = self.context
        if self._session is None:
            self.t_start = time.perf_counter()
            session = ctx.session()
            session.__enter__()
            self._session = session
            self._sampler = build_sampler(self.sampling, ctx.n_vocab, self.tokens, ctx.native.model)
            if self.recorder is not None:
                # every prompt token decoded, each one an output: llama.cpp's last layer
                # routes only the tokens whose logits are wanted
                ctx.native.tap.listen(self.recorder, tap_names(self.recorder.router_inputs))
                ctx.empty(0)
                ctx.prefill(self.tokens, logits_all=True)
            else:
                # what the cache holds from the previous generation and this prompt share is kept
                self.cached_tokens = ctx.reuse(0, self.tokens)
                ctx.prefill(self.tokens[self.cached_tokens:], start=self.cached_tokens)
            self._n_past = len(self.tokens)
        else:
            if self._n_past >= ctx.n_ctx:
                return None
            drafts = self._draft()
            if drafts:
                self._verify(drafts)
                return self._give(self._ready.popleft())
            ctx.step(self._last, self._n_past)
            self._n_past += 1
        self._last = self._sampler.sample(ctx, -1)
        return self._give(self._last)

    def _give(self, token: int) -> int:
        self._given += 1
        return token

    def _draft(self) -> list[int]:
        """Drafts to follow the last sampled token, as many as fit the context
        and the tokens still wanted (llama-server's limits)."""
        if self.drafter is None:
            return []
        n_max = self.context.n_ctx - self._n_past - 2
        if self.max_tokens is not None:
            n_max = min(n_max, self.max_tokens - self._given - 1)
        if n_max <= 0:
            return []
        return self.drafter.draft(0, self.context.kv.tokens(0), self._last, n_max)

    def _verify(self, drafts: list[int]) -> None:
        """One decode of the last sampled token and the drafts; the tokens
        kept are queued, the cache keeps only what they continue from."""
        ctx, start = self.context, self._n_past
        rows = [self._last, *drafts]
        ctx.decode(rows, range(start, start + len(rows)), [0] * len(rows), [True] * len(rows))
        kept = verify(lambda i: self._sampler.sample(ctx, i), 0, drafts)
        self._n_past = start + len(kept)
        if len(kept) < len(rows):
            ctx.truncate(0, self._n_past)
        self._last = kept[-1]
        self.draft_stats.add(len(drafts), len(kept) - 1)
        self._ready.extend(kept)

    def close(self) -> None:
        if self.recorder is not None and self.context.native.tap is not None:
            self.context.native.tap.stop()
        if self._sampler is not None:
            self._sampler.close()
        if self._session is not None:
            session, self._session = self._session, None
            session.__exit__(None, None, None)
