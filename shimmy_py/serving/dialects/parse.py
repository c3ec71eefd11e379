"""Request validation of the generation routes: shimmy's /api/generate and
OpenAI's /v1/chat/completions and /v1/completions (chat fields:
chat_fields.py; the answers' shapes: shapes.py).

Every field is checked up front with a message naming it. A field the route
does not know is a 400 naming it: a missing feature must not turn into
wrong output. OpenAI's optional fields that change nothing a local server
computes (user, metadata, store, service_tier, ...) are accepted (KNOWN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ... import defaults
from ...generation.job import Job
from ...generation.sampling import BOUNDS, SamplingParams
from ..durations import BadDuration, parse_duration
from ..http.errors import ApiError, bad
from . import chat_fields
from .known import known_fields


@dataclass(frozen=True)
class GenRequest:
    """A generation request as it came over HTTP: the job the model computes
    (generation/job.py) and what only the server's side reads."""
    model: str | None
    job: Job
    stream: bool = False
    keep_alive: float | None = None  # seconds the model stays loaded after this request; None: the server's
    include_usage: bool = False      # stream_options.include_usage: a last chunk with usage
    n: int = 1                       # choices: generations of the same prompt (OpenAI's routes)


# Per-request lists are bounded: a flood of stop strings or messages would
# hold a handler (every generated piece is matched against every stop string).
MAX_STOPS = 16             # OpenAI allows 4
MAX_STOP_CHARS = 1024
MAX_LOGIT_BIAS = 4096

MAX_TOP_LOGPROBS = 20      # OpenAI's bound
MAX_CHOICES = 16           # n
SAMPLING = {*BOUNDS, "logit_bias"}
HARMLESS = {"user", "metadata", "store", "service_tier", "prediction", "safety_identifier", "prompt_cache_key",
            "cache_prompt", "modalities"}      # OpenAI's optional fields (and llama-server's cache_prompt) that
#                                                change nothing this server computes
CHAT_FIELDS = {"messages", "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
               "response_format", "grammar", "json_schema", "reasoning_format", "reasoning_effort",
               "chat_template_kwargs", "max_completion_tokens"}
KNOWN = {
    "generate": {"model", "prompt", "system", "max_tokens", "stream", "stop", "keep_alive", "n",
                 "return_routed_experts", *SAMPLING,
                 *CHAT_FIELDS, *HARMLESS},
    "chat": {"model", "max_tokens", "stream", "stream_options", "stop", "keep_alive", "n", "logprobs",
             "top_logprobs", "return_routed_experts", *SAMPLING, *CHAT_FIELDS, *HARMLESS},
    "completions": {"model", "prompt", "max_tokens", "stream", "stream_options", "stop", "keep_alive", "n", "logprobs",
                    "return_routed_experts", "response_format", "grammar", "json_schema", *SAMPLING, *HARMLESS},
}


def _text(value: str, where: str) -> str:
    """A string that UTF-8 can carry (JSON's \\ud800 escapes decode to lone
    surrogates, which cannot be encoded for llama.cpp)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{where} holds a lone UTF-16 surrogate: not text") from None
    return value


def _get(body: dict, key: str, kinds, default=None):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        raise bad(f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}, got a boolean", key)
    if not isinstance(value, kinds):
        raise bad(f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}", key)
    return _text(value, f"'{key}'") if isinstance(value, str) else value


def _number(body, key, default, lo=None, hi=None, integer=False):
    value = _get(body, key, (int,) if integer else (int, float), default)
    if value is None:
        return None
    if not integer and not math.isfinite(value):
        raise bad(f"'{key}' must be a finite number", key)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise bad(f"'{key}' must be {bounds}, got {value}", key)
    return value


def _sampled(body: dict, key: str, default):
    """A sampling number within SamplingParams' own bounds (sampling.BOUNDS)."""
    lo, hi, integer = BOUNDS[key]
    return _number(body, key, default, lo=lo, hi=hi, integer=integer)


def _logit_bias(body: dict) -> tuple:
    """OpenAI's {"token id": bias} map."""
    raw = _get(body, "logit_bias", (dict,), {})
    if len(raw) > MAX_LOGIT_BIAS:
        raise ApiError(400, f"'logit_bias' names {len(raw)} tokens; at most {MAX_LOGIT_BIAS}")
    out = []
    for key, bias in raw.items():
        if not (key.isascii() and key.isdigit()) or isinstance(bias, bool) or not isinstance(bias, (int, float)) \
                or not math.isfinite(bias):
            raise ApiError(400, f"'logit_bias' maps token ids to numbers; got {key!r}: {bias!r}")
        out.append((int(key), float(bias)))
    return tuple(out)


_DEFAULT_SAMPLING = SamplingParams()   # a field a request leaves out takes llama.cpp's default


def _check_known(body: dict, route: str) -> None:
    known_fields(body, KNOWN[route])
    if body.get("modalities") not in (None, ["text"]):
        raise ApiError(400, "'modalities': this server's models give text only")
    if body.get("cache_prompt") is False:
        raise ApiError(400, "'cache_prompt' false is not supported: prompts are always reused where they match")


def _sampling(body: dict) -> SamplingParams:
    d = _DEFAULT_SAMPLING
    numbers = {key: _sampled(body, key, getattr(d, key)) for key in BOUNDS}
    return SamplingParams(**numbers, logit_bias=_logit_bias(body), grammar=chat_fields.grammar(body))


def _stops(body: dict) -> tuple[str, ...]:
    stop = _get(body, "stop", (str, list), [])
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) for s in stop):
        raise bad("'stop' must be a string or a list of strings", "stop")
    if len(stop) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise bad(f"'stop' takes at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters", "stop")
    return tuple(_text(s, "'stop'") for s in stop)


def _max_tokens(body: dict, route: str) -> int | None:
    """max_tokens, or max_completion_tokens (OpenAI's current name; langchain
    sends it): shimmy's 256 by default, OpenAI routes the rest of the context."""
    given = [k for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None]
    if len(given) == 2 and body["max_tokens"] != body["max_completion_tokens"]:
        raise ApiError(400, "'max_tokens' and 'max_completion_tokens' disagree; give one")
    key = given[0] if given else "max_tokens"
    return _number(body, key, defaults.MAX_TOKENS if route == "generate" else None, lo=1, integer=True)


def _logprobs(body: dict, route: str) -> int | None:
    """chat: logprobs true (and top_logprobs 0..20); completions: logprobs N (0..20), OpenAI's legacy form."""
    if route == "chat":
        top = _number(body, "top_logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS, integer=True)
        on = _get(body, "logprobs", (bool,), False)
        if top is not None and not on:
            raise ApiError(400, "'top_logprobs' needs 'logprobs': true")
        return (top or 0) if on else None
    return _number(body, "logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS, integer=True)


def parse_request(body: Any, route: str, spelled: dict | None = None) -> GenRequest:
    """Validates a generation request of `route` ("generate", "chat",
    "completions"). `spelled`: the names a dialect translated its fields from
    (Ollama's options.num_predict for max_tokens): an error names the field
    as the client sent it."""
    try:
        return _parse_request(body, route)
    except ApiError as e:
        raise e.spelled(spelled or {}) from None


def _parse_request(body: Any, route: str) -> GenRequest:
    _check_known(body, route)
    n = _number(body, "n", 1, lo=1, hi=MAX_CHOICES if route != "generate" else 1, integer=True)
    stream = _get(body, "stream", (bool,), route == "generate")  # shimmy streams by default
    options = _get(body, "stream_options", (dict,), {})
    if set(options) - {"include_usage"} or not isinstance(options.get("include_usage", False), bool):
        raise ApiError(400, "'stream_options' takes {\"include_usage\": true|false} only")
    system = _get(body, "system", (str,))
    prompt = _get(body, "prompt", (str,)) if route != "chat" else None
    messages = chat_fields.messages(body, system) if route != "completions" else None
    if route == "chat" and messages is None:
        raise ApiError(400, "'messages' is required")
    if route != "chat" and prompt is None and messages is None:
        raise ApiError(400, "'prompt' is required" + (" (or 'messages')" if route == "generate" else ""))
    if prompt is not None and messages is None and not prompt:
        raise ApiError(400, "'prompt' is empty")
    chat = chat_fields.chat_options(body, chat_fields.template_kwargs(body)) if messages is not None else None
    try:
        keep_alive = parse_duration(body["keep_alive"]) if body.get("keep_alive") is not None else None
    except BadDuration as e:
        raise ApiError(400, str(e)) from None
    sampling = _sampling(body)
    if chat is not None and chat.tools and chat.tool_choice != "none" and sampling.grammar:
        raise ApiError(400, "'tools' cannot be combined with a grammar or response_format: the tool calls have "
                       "their own grammar")
    experts = _get(body, "return_routed_experts", (bool,), False)
    if experts and stream and route not in ("chat", "completions"):
        raise ApiError(400, "'return_routed_experts' comes with the whole answer here (OpenAI's routes also put it "
                       "in a stream's last chunk): set \"stream\": false")
    job = Job(prompt, messages, sampling, _max_tokens(body, route), _stops(body), chat,
              logprobs=_logprobs(body, route) if route != "generate" else None, experts=experts)
    return GenRequest(_get(body, "model", (str,)), job, stream, keep_alive, bool(options.get("include_usage")), n)

