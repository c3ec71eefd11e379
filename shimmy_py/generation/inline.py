"""Generation in the caller's thread, with no engine between: the token source
of the Python API and the CLI (the server's is serving/engine.py). It reuses
what the KV cache of sequence 0 holds from the previous generation
(kvcache.py), prefills the rest, then decodes one token per call."""
from __future__ import annotations

import time

from .context import Context
from .experts import ExpertRecorder, tap_names
from .sampling import SamplingParams, build_sampler


class InlineSequence:
    """A token source that holds the context from its first token until closed."""

    def __init__(self, context: Context, tokens: list[int], sampling: SamplingParams,
                 recorder: ExpertRecorder | None = None):
        self.context, self.tokens, self.sampling = context, tokens, sampling
        self.recorder = recorder   # routing traced: on a context with a tap, every token routed
        self.prompt_tokens, self.cached_tokens = len(tokens), 0
        self.t_start = time.perf_counter()
        self._session = self._sampler = None
        self._last = self._n_past = None

    def next_token(self) -> int | None:
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
            ctx.step(self._last, self._n_past)
            self._n_past += 1
        self._last = self._sampler.sample(ctx, -1)
        return self._last

    def close(self) -> None:
        if self.recorder is not None and self.context.native.tap is not None:
            self.context.native.tap.stop()
        if self._sampler is not None:
            self._sampler.close()
        if self._session is not None:
            session, self._session = self._session, None
            session.__exit__(None, None, None)
