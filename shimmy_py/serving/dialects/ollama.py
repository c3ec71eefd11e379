"""Ollama's native API, as its docs and the official `ollama` client define
it: /api/chat and /api/generate (NDJSON streams, Ollama's default;
`options`, `format`, `think`, `tools`, `system`, `raw`, `keep_alive`; final
objects with done_reason, counts and durations in nanoseconds). The model
routes (/api/tags, /api/show, /api/ps, /api/version): ollama_models.py.

A request is translated into the server's own chat or completion request
(parse.parse_request: one validation for every dialect), so that the prompt
an Ollama chat builds is the one /v1/chat/completions builds for the same
conversation. What Ollama can do and this server cannot (images, a template
override, a fill-in-the-middle suffix, load-time options per request) is a
400 naming the field.

/api/generate is shared with shimmy's own API (SSE, `max_tokens`, as the
model card's curl example sends it). The rule: a body that carries one of
Ollama's own fields (options, format, raw, suffix, template, context, think,
images; the official client always sends suffix and template), or a request
that accepts application/x-ndjson, speaks Ollama's dialect; any other body
is shimmy's, exactly as before.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import replace
from typing import Any, Mapping

from ..http.app import App
from ..http.errors import bad
from ..http.exchange import Request, Response
from .known import known_fields
from .parse import parse_request
from .streaming import answer

OLLAMA_ONLY = {"options", "format", "raw", "suffix", "template", "context", "think", "images"}
# options Ollama takes per request, and the server field each becomes
SAMPLING_OPTIONS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
                    "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n", "seed": "seed",
                    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                    "stop": "stop", "num_predict": "max_tokens"}
# what an error names instead of the server's field it was translated to
SPELLED = {**{ours: f"options.{theirs}" for theirs, ours in SAMPLING_OPTIONS.items()}, "response_format": "format"}
NEUTRAL_OPTIONS = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0, "penalize_newline": False}   # as no sampler
LOAD_OPTIONS = {"num_gpu", "main_gpu", "num_thread", "num_batch", "use_mmap", "use_mlock", "numa", "low_vram",
                "vocab_only", "embedding_only", "logits_all", "num_keep"}
CHAT_KEYS = {"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think", "logprobs",
             "top_logprobs"}
LOAD_KEYS = {"model", "prompt", "keep_alive", "stream"}      # no prompt: load, or unload (keep_alive 0)
GENERATE_KEYS = {"model", "prompt", "suffix", "system", "template", "context", "stream", "raw", "format", "images",
                 "options", "keep_alive", "think", "logprobs", "top_logprobs"}


def speaks_ollama(body: Any, headers: Mapping[str, str]) -> bool:
    """Whether an /api/generate request is Ollama's (else shimmy's)."""
    if "application/x-ndjson" in headers.get("Accept", ""):
        return True
    return isinstance(body, dict) and bool(OLLAMA_ONLY & set(body))


def _empty(body: dict, key: str, why: str) -> None:
    if body.get(key) not in (None, "", [], False):
        raise bad(f"'{key}' is not supported: {why}")


def _options(body: dict) -> dict:
    """Ollama's `options` as the server's request fields."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise bad("'options' must be an object")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in SAMPLING_OPTIONS:
            if key == "num_predict" and isinstance(value, int) and not isinstance(value, bool) and value < 0:
                continue                   # -1: until the end of generation, -2: fill the context
            out[SAMPLING_OPTIONS[key]] = value
        elif key == "num_ctx":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"'options.num_ctx' must be a positive integer, got {value!r}")
            out["context_limit"] = value
        elif key in NEUTRAL_OPTIONS:
            if value != NEUTRAL_OPTIONS[key]:
                raise bad(f"'options.{key}' is not supported (only {NEUTRAL_OPTIONS[key]!r}, which does nothing)")
        elif key in LOAD_OPTIONS:
            raise bad(f"'options.{key}' is set when a model loads: use serve's flags or the model's --config entry")
        else:
            raise bad(f"unsupported option 'options.{key}'")
    return out


def _format(body: dict) -> dict:
    fmt = body.get("format")
    if fmt in (None, ""):
        return {}
    if fmt == "json":
        return {"response_format": {"type": "json_object"}}
    if isinstance(fmt, dict):
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}}
    raise bad("'format' must be \"json\" or a JSON schema")


def _think(body: dict) -> dict:
    """Thinking goes to `thinking`, apart from the answer (as Ollama does for
    thinking models, think unset included); think false turns the template's
    thinking off; "low"/"medium"/"high": gpt-oss's effort."""
    think = body.get("think")
    if think is None:
        return {}
    if think is True:
        return {"reasoning_format": "deepseek"}
    if think is False:
        return {"reasoning_format": "deepseek", "chat_template_kwargs": {"enable_thinking": False}}
    if think in ("low", "medium", "high"):
        return {"reasoning_format": "deepseek", "reasoning_effort": think}
    raise bad("'think' must be true, false, \"low\", \"medium\" or \"high\"")


def _messages(raw) -> list:
    if not isinstance(raw, list):
        raise bad("'messages' must be a list")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}] must be an object")
        _empty(m, "images", "this server's models take text only")
        msg = {k: v for k, v in m.items() if k not in ("images", "thinking", "tool_name")}
        if m.get("thinking"):
            msg["reasoning_content"] = m["thinking"]
        if m.get("tool_name") is not None:
            msg["name"] = m["tool_name"]
        out.append(msg)
    return out


def _common(body: dict) -> dict:
    keep = {"keep_alive": body["keep_alive"]} if body.get("keep_alive") is not None else {}
    lp = {k: body[k] for k in ("logprobs", "top_logprobs") if body.get(k) is not None}
    return {"model": body.get("model"), "stream": body.get("stream", True), **keep, **lp, **_options(body),
            **_format(body)}


def chat_request(body: Any):
    """/api/chat's body as the server's chat request."""
    known_fields(body, CHAT_KEYS, route="/api/chat")
    fields = {**_common(body), **_think(body), "messages": _messages(body.get("messages"))}
    if body.get("tools"):
        fields["tools"] = body["tools"]
    return _parse(fields, "chat")


def generate_request(body: dict):
    """/api/generate's (Ollama's) body: the prompt through the template as a
    user turn (with `system`), or as it is with `raw`."""
    known_fields(body, GENERATE_KEYS, route="/api/generate")
    _empty(body, "images", "this server's models take text only")
    _empty(body, "suffix", "fill-in-the-middle is not implemented")
    _empty(body, "template", "the model's own chat template is used (see /api/show)")
    _empty(body, "context", "send the conversation as /api/chat messages instead")
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise bad("'prompt' must be a string")
    fields = _common(body)
    if body.get("raw"):
        if body.get("system") or body.get("think") is not None:
            raise bad("'raw' sends the prompt as it is: 'system' and 'think' cannot apply")
        if fields.pop("logprobs", None):               # the completions form: logprobs N
            fields["logprobs"] = fields.pop("top_logprobs", 0)
        fields.pop("top_logprobs", None)
        return _parse({**fields, "prompt": prompt}, "completions")
    system = body.get("system") or None
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return _parse({**fields, **_think(body), "messages": messages}, "chat")


def _parse(fields: dict, route: str):
    limit = fields.pop("context_limit", None)
    gr = parse_request(fields, route, SPELLED)
    return replace(gr, job=replace(gr.job, context_limit=limit)) if limit is not None else gr


# --- answers ----------------------------------------------------------------------------------
def now() -> str:
    """Ollama's created_at: RFC 3339 in UTC."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def ns(seconds: float | None) -> int:
    return int(round((seconds or 0.0) * 1e9))


class OllamaShapes:
    """/api/chat's and /api/generate's objects: NDJSON lines, the last with done."""
    framing = "ndjson"

    def __init__(self, model: str, chat: bool, clock):
        self.model, self.chat, self.clock = model, chat, clock

    def _line(self, **fields) -> str:
        return json.dumps({"model": self.model, "created_at": now(), **fields}, ensure_ascii=False)

    def _message(self, content: str = "", thinking: str = "", calls=()) -> dict:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            msg["thinking"] = thinking
        if calls:
            msg["tool_calls"] = [{"function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                                 for c in calls]
        return msg

    def _body(self, content: str, thinking: str = "", calls=()) -> dict:
        if self.chat:
            return {"message": self._message(content, thinking, calls)}
        return {"response": content, **({"thinking": thinking} if thinking else {})}

    def done(self, c) -> dict:
        eval_s = (c.completion_tokens - 1) / c.tokens_per_s if c.tokens_per_s else 0.0
        return {"done": True, "done_reason": "length" if c.finish_reason == "length" else "stop",
                "total_duration": ns(self.clock.total_s()), "load_duration": ns(self.clock.load_s),
                "prompt_eval_count": c.prompt_tokens, "prompt_eval_duration": ns(c.ttft_s),
                "eval_count": c.completion_tokens, "eval_duration": ns(eval_s)}

    @staticmethod
    def logprobs(c) -> dict:
        if c.logprobs is None:
            return {}
        return {"logprobs": [{"token": e["token"], "logprob": e["logprob"], "bytes": e["bytes"],
                              "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": t["bytes"]}
                                               for t in e["top_logprobs"]]} for e in c.logprobs]}

    def final(self, c) -> dict:
        return {"model": self.model, "created_at": now(),
                **self._body(c.text, c.reasoning, c.tool_calls), **self.logprobs(c), **self.done(c)}

    def opening(self) -> list:
        return []

    def piece(self, kind: str, value) -> list:
        if kind == "content":
            return [self._line(**self._body(value), done=False)]
        if kind == "reasoning":
            return [self._line(**self._body("", value), done=False)]
        if kind == "tool_call" and self.chat:
            return [self._line(**self._body("", "", [value]), done=False)]
        return []

    def closing(self, c) -> list:
        return [self._line(**self._body(""), **self.logprobs(c), **self.done(c))]

    def error(self, status: int, message: str, kind: str) -> list:
        return [json.dumps({"error": message})]


def chat(app: App, req: Request) -> Response:
    gr = chat_request(req.json())
    return answer(app, req, gr, lambda name, gr, clock: OllamaShapes(name, True, clock))


def generate(app: App, req: Request, body: Any) -> Response:
    if is_load(body):
        return load_or_unload(app, body)
    gr = generate_request(body)
    return answer(app, req, gr, lambda name, gr, clock: OllamaShapes(name, False, clock))


def is_load(body: Any) -> bool:
    """Ollama's load or unload: a model and no prompt (shimmy's /api/generate has no other use for it)."""
    return isinstance(body, dict) and "model" in body and not body.get("prompt") and set(body) <= LOAD_KEYS


def load_or_unload(app: App, body: dict) -> Response:
    """Ollama's /api/generate with no prompt: loads the model (for its
    keep_alive), or with keep_alive 0 unloads it (once no request runs on
    it; a model not loaded stays so); done_reason says which."""
    from ..durations import BadDuration, parse_duration
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("'model' must be a string", "model")
    try:
        keep_alive = parse_duration(body["keep_alive"]) if body.get("keep_alive") is not None else None
    except BadDuration as e:
        raise bad(str(e), "keep_alive") from None
    state = app.state
    name = state.catalog.resolve(model)
    if keep_alive == 0:
        # as a request with keep_alive 0 ends: unloaded now, or when the requests running on it end
        if state.catalog.canonical(name) in state.pool.residents:
            state.lease(name, 0).close()
        reason = "unload"
    else:
        state.lease(name, keep_alive).close()
        reason = "load"
    return Response.json(200, {"model": name, "created_at": now(), "response": "", "done": True,
                               "done_reason": reason})
