"""struct llama_sampler * of a chain: llama.cpp's samplers added by name
with Python values, in the order the caller adds them; a grammar sampler
beside a chain, and the draw llama.cpp's common sampler makes with both
(`sample_with_grammar`: rejection sampling, as llama-server draws)."""
from __future__ import annotations

from ctypes import POINTER, byref, c_char_p
from ctypes import sizeof as ctypes_sizeof
from typing import Sequence

import numpy as np

from ..errors import GenerationError, NativeError
from .binding import llama_logit_bias, llama_token_data, llama_token_data_array
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

    def apply(self, cur: llama_token_data_array) -> None:
        with self.using() as ptr:
            lib().llama_sampler_apply(ptr, byref(cur))

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


def _grammar_ptr(model: ModelHandle, grammar: str, root: str, triggers: Sequence[str]):
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
    return ptr


class Grammar(Owned):
    """llama.cpp's grammar sampler on its own: tokens that would break the
    GBNF `grammar` get no probability. With `triggers` (regular expressions
    matched against the text generated so far) it is lazy: free text until
    one matches, the grammar from its first group on. A grammar llama.cpp
    cannot parse is a GenerationError with its parser's words."""

    def __init__(self, model: ModelHandle, grammar: str, root: str = "root", triggers: Sequence[str] = ()):
        super().__init__(_grammar_ptr(model, grammar, root, triggers), "llama_sampler_init_grammar")

    def allows(self, token: int) -> bool:
        one = (llama_token_data * 1)(llama_token_data(token, 1.0, 0.0))
        cur = llama_token_data_array(one, 1, -1, False)
        self.apply(cur)
        return one[0].logit != float("-inf")

    def apply(self, cur: llama_token_data_array) -> None:
        with self.using() as ptr:
            lib().llama_sampler_apply(ptr, byref(cur))

    def accept(self, token: int) -> None:
        with self.using() as ptr:
            lib().llama_sampler_accept(ptr, token)

    def _free(self, ptr) -> None:
        lib().llama_sampler_free(ptr)


class Candidates:
    """The candidate array (llama_token_data_array) over one output's logits,
    its memory held here and reused from token to token."""
    DTYPE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

    def __init__(self, n_vocab: int):
        assert self.DTYPE.itemsize == ctypes_sizeof(llama_token_data)
        self.rows = np.empty(n_vocab, dtype=self.DTYPE)
        self._ids = np.arange(n_vocab, dtype=np.int32)

    def fill(self, ctx: ContextHandle, idx: int) -> llama_token_data_array:
        """Every token with output `idx`'s logit, as llama.cpp fills it (ids in order, p 0, unsorted)."""
        self.rows["id"] = self._ids              # a sampler may have reordered the rows in place
        ctx.logits_into(idx, self.rows["logit"])
        self.rows["p"] = 0.0
        data = self.rows.ctypes.data_as(POINTER(llama_token_data))
        return llama_token_data_array(data, len(self.rows), -1, False)


def sample_with_grammar(chain: SamplerChain, grammar: Grammar, cands: Candidates, ctx: ContextHandle,
                        idx: int) -> int:
    """llama.cpp's common_sampler_sample (grammar_first false, as llama-server
    draws): the chain over the whole vocabulary; a token the grammar refuses
    is drawn again, the grammar applied first and then the chain. The chain
    and the grammar then accept the token. (With the grammar first in the
    chain, a grammar that allows many tokens the model does not favour, such
    as JSON's whitespace, took a different share of the draws.)"""
    cur = cands.fill(ctx, idx)
    chain.apply(cur)
    token = cur.data[cur.selected].id
    if not grammar.allows(token):
        cur = cands.fill(ctx, idx)
        grammar.apply(cur)
        chain.apply(cur)
        if cur.selected < 0:
            raise GenerationError("no token is left to sample: the grammar allows none of the chain's candidates")
        token = cur.data[cur.selected].id
    grammar.accept(token)
    chain.accept(token)
    return token
