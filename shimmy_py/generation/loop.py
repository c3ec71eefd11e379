"""The generation loop: one generator that the Python API, the CLI and the
server's streams all consume.

`run()` takes a token source, which prefills the prompt and samples inside
llama.cpp (a Model decoding inline, or a sequence of the server's batching
engine), and turns its tokens into text: it yields pieces as they decode and
returns a `Completion` when it ends (the value of StopIteration). Closing it
early (a client that went away) closes the source, which frees its sequence.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Generator, Optional, Protocol, Sequence

from ..errors import GenerationError
from .experts import ExpertTrace
from .textstream import PieceDecoder, StopMatcher


@dataclass
class Completion:
    """The result of one generation. Timings are wall-clock, measured here:
    `ttft_s` from the request (queueing included) to the first sampled token;
    `tokens_per_s` is the decode speed, tokens after the first divided by the
    time after the first (None when only one token was generated);
    `prefill_tokens_per_s` counts the prompt tokens actually decoded (not the
    cached ones) over the time to the first token."""
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" (end of generation or a stop string), "length", or
    #                                "cancelled" (the server stopped before the generation ended)
    prompt_tokens: int = 0
    cached_tokens: int = 0         # prompt tokens reused from the KV cache, not decoded again
    completion_tokens: int = 0
    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    prefill_tokens_per_s: float | None = None
    reasoning: str = ""            # a chat's thinking, apart from its answer (text)
    tool_calls: list = field(default_factory=list)   # a chat's tool calls (ToolCall); finish_reason "tool_calls"
    stop_word: str = ""            # the stop string that ended it, if one did
    logprobs: list | None = None   # per generated token (logprob, ((token, logprob), ...)), when asked for
    experts: ExpertTrace | None = None   # the routing of every token, when traced (experts.py)
    drafted: int = 0               # speculative decoding: draft tokens verified (speculative.py)
    draft_accepted: int = 0        # of which the model kept

    @property
    def acceptance(self) -> float | None:
        """Accepted draft tokens over drafted ones (None without drafts)."""
        return self.draft_accepted / self.drafted if self.drafted else None


class TokenSource(Protocol):
    """Where tokens come from: `next_token()` prefills on its first call, then
    returns one sampled token per call, or None once the context is full (or,
    where a source has `end_reason`, for the reason it names).
    `t_start` is when the request began (set by the first call at the latest);
    `cached_tokens`, how many prompt tokens it found in the KV cache (known
    after the first call)."""
    prompt_tokens: int
    cached_tokens: int
    t_start: float

    def next_token(self) -> Optional[int]: ...

    def close(self) -> None: ...


class TokenTexts(Protocol):
    """What the loop needs of a vocabulary (generation/vocab.py's Vocab has it)."""
    def is_eog(self, token: int) -> bool: ...

    def token_bytes(self, token: int, special: bool = False) -> bytes: ...


def check_request(prompt_tokens: Sequence[int], max_tokens: int, n_ctx: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise GenerationError(f"max_tokens must be an integer, got {max_tokens!r}")
    if not prompt_tokens:
        raise GenerationError("empty prompt: give at least one token of text")
    if max_tokens < 1:
        raise GenerationError(f"max_tokens must be >= 1, got {max_tokens}")
    if len(prompt_tokens) >= n_ctx:
        raise GenerationError(f"prompt is {len(prompt_tokens)} tokens but the context holds {n_ctx} "
                              "(and needs room for at least one generated token); "
                              "shorten the prompt or raise n_ctx")


def check_stops(stop) -> list[str]:
    """A stop string or a list of them, as a list."""
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    bad = [s for s in stops if not isinstance(s, str)]
    if bad:
        raise GenerationError(f"stop strings must be strings, got {bad[0]!r}")
    return stops


def run(source: TokenSource, vocab: TokenTexts, max_tokens: int, stop: Sequence[str] = (),
        special_ids: frozenset = frozenset()) -> Generator[str, None, Completion]:
    """Text pieces of the tokens `source` samples, until a stop condition.
    `special_ids`: control tokens rendered as their text (a chat format's
    markers, which its parser reads), not as nothing."""
    out = Completion(prompt_tokens=source.prompt_tokens)
    decoder, stops = PieceDecoder(), StopMatcher(stop)
    stopped_by_string, t_first = False, None
    with contextlib.closing(source):
        while True:
            # 1. The source processes the prompt (first call) or feeds back the
            #    previous token, then samples the next one inside llama.cpp.
            token = source.next_token()
            if token is None:                    # the context is full, or the server stops
                out.finish_reason = getattr(source, "end_reason", "length")
                break
            if t_first is None:
                t_first = time.perf_counter()
                out.ttft_s = t_first - source.t_start
                out.cached_tokens = source.cached_tokens
                decoded = source.prompt_tokens - source.cached_tokens
                out.prefill_tokens_per_s = decoded / out.ttft_s if out.ttft_s > 0 else None
            # 2. End of generation token: stop without emitting it.
            if vocab.is_eog(token):
                out.finish_reason = "stop"
                break
            out.tokens.append(token)
            # 3. Its bytes become text once whole characters are complete, and
            #    text is held back while it might be the start of a stop string.
            piece, hit = stops.push(decoder.feed(vocab.token_bytes(token, token in special_ids)))
            if piece:
                out.text += piece
                yield piece
            if hit:
                out.finish_reason, stopped_by_string, out.stop_word = "stop", True, stops.matched
                break
            # 4. Out of budget.
            if len(out.tokens) >= max_tokens:
                out.finish_reason = "length"
                break
        t_end = time.perf_counter()
    if not stopped_by_string:
        # 5. Whatever was held back (an incomplete character, the start of a
        #    stop string that never completed) belongs to the text.
        tail = stops.push(decoder.flush())[0] + stops.flush()
        if tail:
            out.text += tail
            yield tail
    out.completion_tokens = len(out.tokens)
    stats = getattr(source, "draft_stats", None)
    if stats is not None:
        out.drafted, out.draft_accepted = stats.drafted, stats.accepted
    if getattr(source, "logprobs", None) is not None:
        out.logprobs = list(source.token_logprobs[:len(out.tokens)])
    if t_first is not None and out.completion_tokens > 1 and t_end > t_first:
        out.tokens_per_s = (out.completion_tokens - 1) / (t_end - t_first)
    return out


def relay(gen, each: Callable):
    """A generator of `each(item)`'s items for every item `gen` yields; it
    returns `gen`'s return value (its Completion), and closing it closes `gen`.
    The one loop for every stage that turns one stream into another."""
    with contextlib.closing(gen):
        while True:
            try:
                item = next(gen)
            except StopIteration as done:
                return done.value
            yield from each(item)


def drain(gen, on_piece=None) -> Completion:
    """Runs a generation stream to its end, handing each text piece to
    `on_piece` if given, and returns its Completion. If `on_piece` raises (a
    client that went away), the stream is closed, which frees its sequence."""
    def hand(piece) -> tuple:
        if on_piece is not None:
            on_piece(piece)
        return ()                    # no items: relay's first step runs the stream to its end
    try:
        next(relay(gen, hand))
    except StopIteration as done:
        return done.value
    raise AssertionError("unreachable: hand() yields nothing")
