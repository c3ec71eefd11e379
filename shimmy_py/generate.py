"""The generation loop: one generator that the Python API, the CLI and the
server's streams all consume.

`run()` yields text pieces as they decode and returns a `Completion` when it
ends (the value of StopIteration); closing it early (a client that went away)
releases the context at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generator, Sequence

from .errors import GenerationError
from .sampling import SamplingParams, build_chain
from .textstream import PieceDecoder, StopMatcher


@dataclass
class Completion:
    """The result of one generation. Timings are wall-clock, measured here:
    `ttft_s` from the start of prompt processing to the first sampled token;
    `tokens_per_s` is the decode speed, tokens after the first divided by the
    time after the first (None when only one token was generated)."""
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" (end of generation or a stop string) or "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    prefill_tokens_per_s: float | None = None


def check_request(prompt_tokens: Sequence[int], max_tokens: int, n_ctx: int) -> None:
    if not prompt_tokens:
        raise GenerationError("empty prompt: give at least one token of text")
    if max_tokens < 1:
        raise GenerationError(f"max_tokens must be >= 1, got {max_tokens}")
    if len(prompt_tokens) >= n_ctx:
        raise GenerationError(f"prompt is {len(prompt_tokens)} tokens but the context holds {n_ctx} "
                              "(and needs room for at least one generated token); "
                              "shorten the prompt or raise n_ctx")


def run(engine, prompt_tokens: Sequence[int], max_tokens: int, sampling: SamplingParams,
        stop: Sequence[str] = ()) -> Generator[str, None, Completion]:
    """Generates from `prompt_tokens` on `engine` (a Model's private side)."""
    check_request(prompt_tokens, max_tokens, engine.n_ctx)
    chain = build_chain(sampling, engine.n_vocab)
    out = Completion(prompt_tokens=len(prompt_tokens))
    decoder, stops = PieceDecoder(), StopMatcher(stop)
    with chain, engine.session() as ctx:
        # 1. Prompt processing: the whole prompt goes through the model in
        #    batches; only the last position's logits are kept.
        t0 = time.perf_counter()
        ctx.clear()
        engine.prefill(ctx, prompt_tokens)
        if sampling.repeat_penalty != 1.0:
            for tok in prompt_tokens:   # penalties look back over the prompt too, as in llama.cpp
                chain.accept(tok)
        n_past = len(prompt_tokens)
        t_first = None
        stopped_by_string = False
        while True:
            # 2. Sample the next token from the last logits, inside llama.cpp.
            token = chain.sample(ctx, -1)
            if t_first is None:
                t_first = time.perf_counter()
                out.ttft_s = t_first - t0
                out.prefill_tokens_per_s = len(prompt_tokens) / out.ttft_s if out.ttft_s > 0 else None
            # 3. End of generation token: stop without emitting it.
            if engine.is_eog(token):
                out.finish_reason = "stop"
                break
            out.tokens.append(token)
            # 4. Its bytes become text once whole characters are complete, and
            #    text is held back while it might be the start of a stop string.
            piece, hit = stops.push(decoder.feed(engine.token_bytes(token)))
            if piece:
                out.text += piece
                yield piece
            if hit:
                out.finish_reason, stopped_by_string = "stop", True
                break
            # 5. Out of budget: max_tokens reached, or no room left in the
            #    context to feed this token back.
            if len(out.tokens) >= max_tokens or n_past >= engine.n_ctx:
                out.finish_reason = "length"
                break
            # 6. Feed the token back to compute the next logits.
            engine.step(ctx, token, n_past)
            n_past += 1
        t_end = time.perf_counter()
    if not stopped_by_string:
        # 7. Whatever was held back (an incomplete character, the start of a
        #    stop string that never completed) belongs to the text.
        tail = stops.push(decoder.flush())[0] + stops.flush()
        if tail:
            out.text += tail
            yield tail
    out.completion_tokens = len(out.tokens)
    if t_first is not None and out.completion_tokens > 1 and t_end > t_first:
        out.tokens_per_s = (out.completion_tokens - 1) / (t_end - t_first)
    return out

