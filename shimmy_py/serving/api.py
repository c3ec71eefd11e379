"""Request validation and response shapes of the HTTP API: shimmy's
/api/generate and OpenAI's /v1/chat/completions and /v1/completions.

Every field is checked up front with a message naming it; unknown extra fields
are ignored, as OpenAI clients expect.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .. import defaults
from ..generation.loop import Completion
from ..generation.sampling import SamplingParams
from .durations import BadDuration, parse_duration


class ApiError(Exception):
    """An HTTP error answer: status, message and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers=None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}


@dataclass(frozen=True)
class GenRequest:
    model: str | None
    prompt: str | None            # raw text, no template
    messages: list | None         # chat messages, formatted with the model's template
    sampling: SamplingParams
    max_tokens: int | None        # None: until end of generation or a full context
    stop: tuple[str, ...] = ()
    stream: bool = False
    keep_alive: float | None = None  # seconds the model stays loaded after this request; None: the server's
    template_kwargs: dict | None = None  # chat template variables (chat_template_kwargs, reasoning_effort)


# Per-request lists are bounded: a flood of stop strings or messages would
# hold a handler (every generated piece is matched against every stop string).
MAX_STOPS = 16             # OpenAI allows 4
MAX_STOP_CHARS = 1024
MAX_MESSAGES = 4096
MAX_LOGIT_BIAS = 4096
MAX_TEMPLATE_KWARGS = 32


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
        raise ApiError(400, f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ApiError(400, f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}")
    return _text(value, f"'{key}'") if isinstance(value, str) else value


def _number(body, key, default, lo=None, hi=None, integer=False):
    value = _get(body, key, (int,) if integer else (int, float), default)
    if value is None:
        return None
    if not integer and not math.isfinite(value):
        raise ApiError(400, f"'{key}' must be a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ApiError(400, f"'{key}' must be {bounds}, got {value}")
    return value


def _template_kwargs(body: dict) -> dict | None:
    """llama-server's chat_template_kwargs (variables for the chat template,
    e.g. Qwen3's enable_thinking) and OpenAI's reasoning_effort ("none": no
    thinking), merged as llama-server merges them."""
    kwargs = dict(_get(body, "chat_template_kwargs", (dict,), {}))
    if len(kwargs) > MAX_TEMPLATE_KWARGS or any(len(k) > 64 for k in kwargs):
        raise ApiError(400, f"'chat_template_kwargs' takes at most {MAX_TEMPLATE_KWARGS} names of at most 64 "
                       "characters")
    if not isinstance(kwargs.get("enable_thinking", False), bool):
        raise ApiError(400, "'chat_template_kwargs.enable_thinking' must be a boolean")
    effort = _get(body, "reasoning_effort", (str,))
    if effort == "none":
        kwargs["enable_thinking"] = False
        kwargs.pop("reasoning_effort", None)
    elif effort:
        kwargs["reasoning_effort"] = _text(effort, "'reasoning_effort'")
    return kwargs or None


def _messages(body: dict, system: str | None) -> list | None:
    messages = _get(body, "messages", (list,))
    if messages is None:
        return None
    if len(messages) > MAX_MESSAGES:
        raise ApiError(400, f"'messages' holds {len(messages)} messages; at most {MAX_MESSAGES}")
    out = [{"role": "system", "content": system}] if system else []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a string 'role'")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(_text_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content))
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string or a list of content parts")
        _text(m["role"], f"messages[{i}].role")
        _text(content, f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    if not out:
        raise ApiError(400, "'messages' is empty")
    return out


def _text_part(part, where: str) -> str:
    """An OpenAI content part: the text of a text part; other kinds are skipped."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ApiError(400, f"{where} must be an object with a string 'type'")
    if part["type"] != "text":
        return ""
    if not isinstance(part.get("text"), str):
        raise ApiError(400, f"{where}.text must be a string")
    return part["text"]


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


def parse_request(body: Any, route: str) -> GenRequest:
    """Validates a generation request of `route` ("generate", "chat", "completions")."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    stop = _get(body, "stop", (str, list), [])
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) for s in stop):
        raise ApiError(400, "'stop' must be a string or a list of strings")
    if len(stop) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise ApiError(400, f"'stop' takes at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters")
    stop = tuple(_text(s, "'stop'") for s in stop)
    if _get(body, "n", (int,), 1) != 1:
        raise ApiError(400, "'n' must be 1: one choice per request (send several requests for more)")
    d = _DEFAULT_SAMPLING
    sampling = SamplingParams(
        temperature=_number(body, "temperature", d.temperature, lo=0.0, hi=100.0),
        top_k=_number(body, "top_k", d.top_k, lo=0, integer=True),
        top_p=_number(body, "top_p", d.top_p, lo=1e-9, hi=1.0),
        min_p=_number(body, "min_p", d.min_p, lo=0.0, hi=1.0),
        repeat_penalty=_number(body, "repeat_penalty", d.repeat_penalty, lo=1e-9),
        seed=_number(body, "seed", None, lo=0, hi=2**32 - 1, integer=True),
        logit_bias=_logit_bias(body))
    max_tokens = _number(body, "max_tokens", defaults.MAX_TOKENS if route == "generate" else None, lo=1,
                         integer=True)
    system = _get(body, "system", (str,))
    prompt = _get(body, "prompt", (str,)) if route != "chat" else None
    messages = _messages(body, system) if route != "completions" else None
    if route == "chat" and messages is None:
        raise ApiError(400, "'messages' is required")
    if route != "chat" and prompt is None and messages is None:
        raise ApiError(400, "'prompt' is required" + (" (or 'messages')" if route == "generate" else ""))
    if prompt is not None and messages is None and not prompt:
        raise ApiError(400, "'prompt' is empty")
    stream = _get(body, "stream", (bool,), route == "generate")  # shimmy streams by default
    try:
        keep_alive = parse_duration(body["keep_alive"]) if body.get("keep_alive") is not None else None
    except BadDuration as e:
        raise ApiError(400, str(e)) from None
    return GenRequest(_get(body, "model", (str,)), prompt, messages, sampling, max_tokens, stop, stream,
                      keep_alive, _template_kwargs(body) if messages is not None else None)


def usage(c: Completion) -> dict:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": c.cached_tokens}}


def timing(c: Completion) -> dict:
    return {"ttft_ms": round(c.ttft_s * 1000, 2),
            "tokens_per_second": round(c.tokens_per_s, 2) if c.tokens_per_s else None}


def generate_response(model: str, c: Completion) -> dict:
    """shimmy's /api/generate answer, with usage and timing added."""
    return {"response": c.text, "model": model, "done": True, "finish_reason": c.finish_reason,
            **usage(c), **timing(c)}


class OpenAIShapes:
    """Builds the objects of one OpenAI-style response (one id, one timestamp)."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def _wrap(self, obj: str, choices: list, **extra) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def final(self, c: Completion) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": c.text},
                      "finish_reason": c.finish_reason}
            return self._wrap("chat.completion", [choice], usage=usage(c))
        choice = {"index": 0, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
        return self._wrap("text_completion", [choice], usage=usage(c))

    def chunk(self, piece: str | None, finish: str | None = None, first: bool = False, c=None) -> dict:
        extra = {"usage": usage(c)} if c is not None else {}
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({} if piece is None else {"content": piece})
            return self._wrap("chat.completion.chunk",
                              [{"index": 0, "delta": delta, "finish_reason": finish}], **extra)
        return self._wrap("text_completion", [{"index": 0, "text": piece or "", "logprobs": None,
                                               "finish_reason": finish}], **extra)


def openai_error(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "param": None, "code": e.status}}
