"""Sampling settings and the llama.cpp sampler chain built from them.

All sampling happens inside llama.cpp's chain (`llama_sampler_sample`), in the
order llama.cpp's own tools use: penalties, top-k, top-p, min-p, temperature,
then a seeded draw. Temperature 0 is greedy (argmax), as in llama.cpp.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Optional

from ._owned import SamplerChain
from ._runtime import lib
from .errors import GenerationError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8     # llama.cpp's default; 0 means greedy
    top_k: int = 40              # llama.cpp's default; 0 disables
    top_p: float = 0.95          # llama.cpp's default; 1.0 disables
    min_p: float = 0.05          # llama.cpp's default; 0 disables
    repeat_penalty: float = 1.0  # 1.0 disables, as llama.cpp's default
    repeat_last_n: int = 64      # window the penalty looks back over (llama.cpp's default)
    seed: Optional[int] = None   # None draws a fresh seed; a number repeats the run

    def validate(self) -> None:
        checks = [
            (math.isfinite(self.temperature) and self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}"),
            (0.0 <= self.min_p <= 1.0, f"min_p must be in [0, 1], got {self.min_p}"),
            (self.repeat_penalty > 0, f"repeat_penalty must be > 0, got {self.repeat_penalty}"),
            (self.seed is None or 0 <= self.seed < 2**32, f"seed must be in [0, 2**32), got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GenerationError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def build_chain(params: SamplingParams, n_vocab: int) -> SamplerChain:
    """A new sampler chain for one generation (it holds the RNG and penalty state)."""
    L = lib()
    chain = SamplerChain()
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
