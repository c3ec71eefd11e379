"""Sampling settings and the llama.cpp sampler chain built from them.

Sampling happens inside llama.cpp's chain (`llama_sampler_sample`), in the
order llama.cpp's own tools use: logit bias, penalties, top-k, top-p, min-p, temperature,
then a seeded draw. Temperature 0 is greedy (argmax), as in llama.cpp. Plain
greedy (no bias, no penalty) needs no chain: `Argmax` reads the logits in place.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Optional, Sequence

from ..native.binding import llama_logit_bias
from ..native.owned import SamplerChain
from ..native.runtime import lib
from ..errors import GenerationError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8     # llama.cpp's default; 0 means greedy
    top_k: int = 40              # llama.cpp's default; 0 disables
    top_p: float = 0.95          # llama.cpp's default; 1.0 disables
    min_p: float = 0.05          # llama.cpp's default; 0 disables
    repeat_penalty: float = 1.0  # 1.0 disables, as llama.cpp's default
    repeat_last_n: int = 64      # window the penalty looks back over (llama.cpp's default)
    seed: Optional[int] = None   # None draws a fresh seed; a number repeats the run
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token, bias) added to the logits first

    def validate(self, n_vocab: int | None = None) -> None:
        """Raises GenerationError naming the first bad setting."""
        bad_ids = [t for t, _ in self.logit_bias if n_vocab is not None and not 0 <= t < n_vocab]
        checks = [
            (not bad_ids, f"logit_bias names tokens outside the vocabulary [0, {n_vocab}): {bad_ids[:5]}"),
            (math.isfinite(self.temperature) and self.temperature >= 0,
             f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}"),
            (0.0 <= self.min_p <= 1.0, f"min_p must be in [0, 1], got {self.min_p}"),
            (self.repeat_penalty > 0, f"repeat_penalty must be > 0, got {self.repeat_penalty}"),
            (self.seed is None or 0 <= self.seed < 2**32, f"seed must be in [0, 2**32), got {self.seed}"),
            (all(math.isfinite(b) for _, b in self.logit_bias), "logit_bias values must be finite"),
        ]
        for ok, message in checks:
            if not ok:
                raise GenerationError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Argmax:
    """Plain greedy sampling: the largest logit, read in place through numpy.
    The same token as llama.cpp's greedy sampler (both take the first maximum),
    without the chain filling a candidate array of the whole vocabulary for
    every token (benchmarks/sampling_cost.py measures both)."""

    def __init__(self, n_vocab: int):
        self.n_vocab = n_vocab

    def sample(self, ctx, idx: int) -> int:
        return ctx.argmax(idx, self.n_vocab)

    def accept(self, token: int) -> None:
        """Greedy sampling keeps no state."""

    def close(self) -> None:
        """Nothing native to free."""


def build_chain(params: SamplingParams, n_vocab: int, prompt: Sequence[int] = ()) -> SamplerChain | Argmax:
    """A new sampler for one generation (a chain holds the RNG and penalty
    state); `params` must have passed validate(n_vocab). Penalties look back
    over the `prompt` tokens too, as in llama.cpp."""
    if params.greedy and not params.logit_bias and params.repeat_penalty == 1.0:
        return Argmax(n_vocab)
    chain = _chain(params, n_vocab)
    if params.repeat_penalty != 1.0:
        for tok in prompt:
            chain.accept(tok)
    return chain


def _chain(params: SamplingParams, n_vocab: int) -> SamplerChain:
    """llama.cpp's sampler chain for `params`, in llama.cpp's order."""
    L = lib()
    chain = SamplerChain()
    if params.logit_bias:
        arr = (llama_logit_bias * len(params.logit_bias))(*[llama_logit_bias(t, b) for t, b in params.logit_bias])
        chain.add(L.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), arr),
                  "llama_sampler_init_logit_bias")
    if params.repeat_penalty != 1.0:
        chain.add(L.llama_sampler_init_penalties(n_vocab, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0),
                  "llama_sampler_init_penalties")
    if params.greedy:
        chain.add(L.llama_sampler_init_greedy(), "llama_sampler_init_greedy")
        return chain
    if params.top_k > 0:
        chain.add(L.llama_sampler_init_top_k(params.top_k), "llama_sampler_init_top_k")
    chain.add(L.llama_sampler_init_top_p(params.top_p, 1), "llama_sampler_init_top_p")
    chain.add(L.llama_sampler_init_min_p(params.min_p, 1), "llama_sampler_init_min_p")
    chain.add(L.llama_sampler_init_temp(params.temperature), "llama_sampler_init_temp")
    seed = params.seed if params.seed is not None else secrets.randbits(32) & 0xFFFFFFFE
    chain.add(L.llama_sampler_init_dist(seed), "llama_sampler_init_dist")
    return chain
