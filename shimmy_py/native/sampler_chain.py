"""struct llama_sampler * of a chain: llama.cpp's samplers added by name
with Python values, in the order the caller adds them."""
from __future__ import annotations

from ctypes import c_char_p
from typing import Sequence

from ..errors import GenerationError, NativeError
from .binding import llama_logit_bias
from .context_handle import ContextHandle
from .model_handle import ModelHandle
from .owned import Owned
from .runtime import lib


class SamplerChain(Owned):
    """A sampler chain; owns the samplers added to it."""

    def __init__(self):
        L = lib()
        params = L.llama_sampler_chain_default_params()
        params.no_perf = True
        super().__init__(L.llama_sampler_chain_init(params), "llama_sampler_chain_init")

    def _add(self, sampler_ptr, what: str) -> None:
        if not sampler_ptr:
            raise NativeError(f"{what} returned NULL")
        with self.using() as ptr:
            lib().llama_sampler_chain_add(ptr, sampler_ptr)

    def add_logit_bias(self, n_vocab: int, bias: Sequence[tuple[int, float]]) -> None:
        arr = (llama_logit_bias * len(bias))(*[llama_logit_bias(t, b) for t, b in bias])
        self._add(lib().llama_sampler_init_logit_bias(n_vocab, len(bias), arr), "llama_sampler_init_logit_bias")

    def add_penalties(self, n_vocab: int, last_n: int, repeat: float, freq: float = 0.0,
                      present: float = 0.0) -> None:
        self._add(lib().llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present),
                  "llama_sampler_init_penalties")

    def add_grammar(self, model: ModelHandle, grammar: str, root: str = "root", triggers: Sequence[str] = ()) -> None:
        """llama.cpp's grammar sampler: tokens that would break the GBNF
        `grammar` get no probability. With `triggers` (regular expressions
        matched against the text generated so far) it is lazy: free text until
        one matches, the grammar from its first group on. A grammar llama.cpp
        cannot parse is a GenerationError with its parser's words."""
        from . import log
        patterns = [p.encode() for p in triggers]
        arr = (c_char_p * max(1, len(patterns)))(*patterns)
        with log.capture() as lines, model.vocab_in_use() as vocab:
            if triggers:
                ptr = lib().llama_sampler_init_grammar_lazy_patterns(vocab, grammar.encode(), root.encode(), arr,
                                                                      len(patterns), None, 0)
            else:
                ptr = lib().llama_sampler_init_grammar(vocab, grammar.encode(), root.encode())
        if not ptr:
            why = next((ln.strip() for ln in lines if "error" in ln.lower() or "parse" in ln.lower()), "")
            raise GenerationError(f"llama.cpp cannot parse the grammar: {why or 'see the log with -v'}")
        self._add(ptr, "llama_sampler_init_grammar")

    def add_greedy(self) -> None:
        self._add(lib().llama_sampler_init_greedy(), "llama_sampler_init_greedy")

    def add_top_k(self, k: int) -> None:
        self._add(lib().llama_sampler_init_top_k(k), "llama_sampler_init_top_k")

    def add_top_p(self, p: float, min_keep: int = 1) -> None:
        self._add(lib().llama_sampler_init_top_p(p, min_keep), "llama_sampler_init_top_p")

    def add_min_p(self, p: float, min_keep: int = 1) -> None:
        self._add(lib().llama_sampler_init_min_p(p, min_keep), "llama_sampler_init_min_p")

    def add_temperature(self, t: float) -> None:
        self._add(lib().llama_sampler_init_temp(t), "llama_sampler_init_temp")

    def add_dist(self, seed: int) -> None:
        self._add(lib().llama_sampler_init_dist(seed), "llama_sampler_init_dist")

    def accept(self, token: int) -> None:
        with self.using() as ptr:
            lib().llama_sampler_accept(ptr, token)

    def sample(self, ctx: ContextHandle, idx: int) -> int:
        """Samples output `idx` of ctx's last decode (under the context's lock:
        the sampler reads its logits)."""
        with ctx.using() as ctx_ptr, self.using() as ptr:
            return lib().llama_sampler_sample(ptr, ctx_ptr, idx)

    def _free(self, ptr) -> None:
        lib().llama_sampler_free(ptr)
