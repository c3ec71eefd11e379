"""Sampling settings and the llama.cpp sampler chain built from them.

Sampling happens inside llama.cpp's chain (`llama_sampler_sample`), in the
order llama.cpp's own tools use: logit bias, penalties, top-k, top-p, min-p, temperature,
then a seeded draw. Temperature 0 is greedy (argmax), as in llama.cpp. Plain
greedy (no bias, no penalty) needs no chain: `Argmax` reads the logits in place.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence, Union

from ..errors import GenerationError
from ..fields import Shortcut, opt
from ..native.sampler_chain import Candidates, Grammar, SamplerChain, sample_with_grammar


def _number(integer: bool = False):
    """Text from the command line (or a value) as the field's number; validate() bounds it."""
    def parse(value):
        try:
            return int(value) if integer else float(value)
        except (TypeError, ValueError):
            raise GenerationError(f"expected {'an integer' if integer else 'a number'}, got {value!r}") from None
    return parse


# Each number's bounds (least, most, integer), in one place: the Python API and the CLI (validate) and
# every HTTP dialect (serving/dialects/parse.py) accept and refuse the same values. Open bounds (top_p and
# repeat_penalty above 0) as the least positive value a client sends.
BOUNDS: dict[str, tuple] = {
    "temperature": (0.0, 100.0, False), "top_k": (0, None, True), "top_p": (1e-9, 1.0, False),
    "min_p": (0.0, 1.0, False), "repeat_penalty": (1e-9, None, False), "repeat_last_n": (-1, 1 << 20, True),
    "frequency_penalty": (-2.0, 2.0, False), "presence_penalty": (-2.0, 2.0, False),
    "seed": (0, 2**32 - 1, True),
}


def within(name: str, value) -> bool:
    """Whether `value` (a number) is within BOUNDS[name]."""
    lo, hi, _ = BOUNDS[name]
    return math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)


def bounds_text(name: str) -> str:
    lo, hi, _ = BOUNDS[name]
    return " and ".join(t for t in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if t)


@dataclass(frozen=True)
class SamplingParams:
    """How each token is drawn, as one record from the request (or the CLI, or
    the Python API) to llama.cpp's sampler chain. Each field's default is
    llama.cpp's, with its reason; each describes its command-line flag."""
    temperature: float = opt(0.8, flags=("--temperature", "--temp"), parse=_number(),
                             help="0 is greedy")               # llama.cpp's default; 0 means greedy
    top_k: int = opt(40, flags=("--top-k",), parse=_number(True), help="0 disables")   # llama.cpp's default
    top_p: float = opt(0.95, flags=("--top-p",), parse=_number(), help="1.0 disables")  # llama.cpp's default
    min_p: float = opt(0.05, flags=("--min-p",), parse=_number(), help="0 disables")    # llama.cpp's default
    repeat_penalty: float = opt(1.0, flags=("--repeat-penalty",), parse=_number(),
                                help="1.0 disables")          # as llama.cpp's default
    repeat_last_n: int = opt(64, flags=("--repeat-last-n",), parse=_number(True),
                             help="tokens the penalty looks back over")   # llama.cpp's default
    frequency_penalty: float = opt(0.0, flags=("--frequency-penalty",), parse=_number(),
                                   help="0 disables")          # llama.cpp's default (OpenAI's too)
    presence_penalty: float = opt(0.0, flags=("--presence-penalty",), parse=_number(),
                                  help="0 disables")           # llama.cpp's default (OpenAI's too)
    seed: Optional[int] = opt(None, flags=("--seed",), parse=_number(True),
                              help="repeat a sampled run (default: a fresh seed)")
    logit_bias: tuple[tuple[int, float], ...] = ()   # (token, bias) added to the logits first
    grammar: str = opt("", flags=("--grammar",), metavar="GBNF", help="a GBNF grammar the output must follow",
                       shortcuts={"json_schema": Shortcut("--json-schema", "a JSON schema (JSON text) the output "
                                                                           "must be a document of", "JSON")},
                       fold=lambda current, given: grammar_of_schema(given["json_schema"]))
    grammar_triggers: tuple[str, ...] = ()   # texts that switch the grammar on (a lazy grammar); (): from the start
    grammar_root: str = "root"               # the rule the grammar starts at

    def __post_init__(self):
        if isinstance(self.logit_bias, dict):      # {token id: bias}, as OpenAI's field
            object.__setattr__(self, "logit_bias", tuple((int(k), float(v)) for k, v in self.logit_bias.items()))

    @classmethod
    def build(cls, base: "SamplingParams | None" = None, **changes) -> "SamplingParams":
        """`base` (default: llama.cpp's defaults) with the named fields changed;
        an unknown name is a TypeError, as for any keyword."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unexpected sampling parameter {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return replace(base or cls(), **changes)

    def validate(self, n_vocab: int | None = None) -> None:
        """Raises GenerationError naming the first bad setting (BOUNDS)."""
        for name, (_, _, integer) in BOUNDS.items():
            value = getattr(self, name)
            if value is None and name == "seed":
                continue
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                raise GenerationError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
            if not within(name, value):
                raise GenerationError(f"{name} must be {bounds_text(name)}, got {value}")
        bad_ids = [t for t, _ in self.logit_bias if n_vocab is not None and not 0 <= t < n_vocab]
        if bad_ids:
            raise GenerationError(f"logit_bias names tokens outside the vocabulary [0, {n_vocab}): {bad_ids[:5]}")
        if not all(math.isfinite(b) for _, b in self.logit_bias):
            raise GenerationError("logit_bias values must be finite")
        if not isinstance(self.grammar, str) or not all(isinstance(x, str) and x for x in self.grammar_triggers):
            raise GenerationError("grammar must be GBNF text and its triggers non-empty texts")

    @property
    def penalized(self) -> bool:
        return self.repeat_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Argmax:
    """Plain greedy sampling: the largest logit, read in place through numpy.
    The same token as llama.cpp's greedy sampler (both take the first maximum),
    without the chain filling a candidate array of the whole vocabulary for
    every token (benchmarks/sampling_cost.py measures both)."""

    def sample(self, context, idx: int) -> int:
        return context.argmax(idx)

    def accept(self, token: int) -> None:
        """Greedy sampling keeps no state."""

    def close(self) -> None:
        """Nothing native to free."""


class Chain:
    """llama.cpp's sampler chain for one generation (it holds the RNG and the
    penalty state), and its grammar beside it, as llama.cpp's common sampler
    keeps them: a draw the grammar refuses is drawn again under it."""

    def __init__(self, chain: SamplerChain, grammar: Grammar | None = None, n_vocab: int = 0):
        self.chain, self.grammar = chain, grammar
        self._candidates = Candidates(n_vocab) if grammar is not None else None

    def sample(self, context, idx: int) -> int:
        if self.grammar is None:
            return self.chain.sample(context.native, idx)
        return sample_with_grammar(self.chain, self.grammar, self._candidates, context.native, idx)

    def accept(self, token: int) -> None:
        """A token the caller chose (a prompt's, for the penalties' window)."""
        self.chain.accept(token)

    def close(self) -> None:
        self.chain.close()
        if self.grammar is not None:
            self.grammar.close()


Sampler = Union[Argmax, Chain]


def build_sampler(params: SamplingParams, n_vocab: int, prompt: Sequence[int] = (), model=None) -> Sampler:
    """A new sampler for one generation; `params` must have passed
    validate(n_vocab). Penalties look back over the `prompt` tokens too, as
    in llama.cpp. A grammar needs the model (its vocabulary)."""
    if params.greedy and not params.logit_bias and not params.penalized and not params.grammar:
        return Argmax()
    grammar = _grammar(params, model)
    try:
        chain = Chain(_chain(params, n_vocab), grammar, n_vocab)
    except BaseException:
        if grammar is not None:
            grammar.close()
        raise
    if params.penalized:
        for tok in prompt:
            chain.accept(tok)
    return chain


def _grammar(params: SamplingParams, model) -> Grammar | None:
    """The grammar sampler of `params`, beside the chain (llama.cpp's common sampler keeps it apart)."""
    if not params.grammar:
        return None
    if model is None:
        raise GenerationError("a grammar needs the model's vocabulary")
    return Grammar(model, params.grammar, params.grammar_root, [trigger_pattern(t) for t in params.grammar_triggers])


def _chain(params: SamplingParams, n_vocab: int) -> SamplerChain:
    """llama.cpp's sampler chain for `params`, in llama.cpp's order."""
    chain = SamplerChain()
    try:
        if params.logit_bias:
            chain.add_logit_bias(n_vocab, params.logit_bias)
        if params.penalized:
            chain.add_penalties(n_vocab, params.repeat_last_n, params.repeat_penalty, params.frequency_penalty,
                                params.presence_penalty)
        if params.greedy:
            chain.add_greedy()
            return chain
        if params.top_k > 0:
            chain.add_top_k(params.top_k)
        chain.add_top_p(params.top_p)
        chain.add_min_p(params.min_p)
        chain.add_temperature(params.temperature)
        chain.add_dist(params.seed if params.seed is not None else secrets.randbits(32) & 0xFFFFFFFE)
        return chain
    except BaseException:
        chain.close()
        raise


def trigger_pattern(text: str) -> str:
    """A lazy grammar's trigger as llama.cpp takes it: a regular expression
    (ECMAScript) matched from the start of the output, whose first group is
    where the grammar starts."""
    special = set("\\^$.|?*+()[]{}")
    escaped = "".join("\\" + c if c in special else c for c in text)
    return "[\\s\\S]*?(" + escaped + "[\\s\\S]*)"


def grammar_of_schema(schema) -> str:
    """--json-schema's JSON text (or a schema) as the grammar of its documents."""
    import json

    from .grammar import schema_to_grammar
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise GenerationError(f"--json-schema is not JSON: {e}") from None
    return schema_to_grammar(schema)
