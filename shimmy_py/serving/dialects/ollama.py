"""Ollama's native API, as its docs and the official `ollama` client define
it: /api/chat and /api/generate (NDJSON streams, Ollama's default;
`options`, `format`, `think`, `tools`, `system`, `raw`, `keep_alive`; final
objects with done_reason, counts and durations in nanoseconds). The model
routes (/api/tags, /api/show, /api/ps, /api/version): ollama_models.py.

A request is read by its table (jobs.py: the parsers every dialect shares),
so that the prompt an Ollama chat builds is the one /v1/chat/completions
builds for the same conversation. What Ollama can do and this server cannot (images, a template
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
from typing import Any, Mapping

from ..http.app import App
from ..http.errors import bad
from ..http.exchange import Request, Response
from . import chat_fields as c
from . import values as v
from .jobs import Field, GenRequest, Shape, Sub, build, read
from .streaming import answer

OLLAMA_ONLY = {"options", "format", "raw", "suffix", "template", "context", "think", "images"}
NEUTRAL_OPTIONS = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0, "penalize_newline": False}   # as no sampler
LOAD_OPTIONS = {"num_gpu", "main_gpu", "num_thread", "num_batch", "use_mmap", "use_mlock", "numa", "low_vram",
                "vocab_only", "embedding_only", "logits_all", "num_keep"}
LOAD_KEYS = {"model", "prompt", "keep_alive", "stream"}      # no prompt: load, or unload (keep_alive 0)


def speaks_ollama(body: Any, headers: Mapping[str, str]) -> bool:
    """Whether an /api/generate request is Ollama's (else shimmy's)."""
    if "application/x-ndjson" in headers.get("Accept", ""):
        return True
    return isinstance(body, dict) and bool(OLLAMA_ONLY & set(body))


def _num_predict(value, name: str) -> int | None:
    """A token budget; -1 (until the end of generation) and -2 (fill the context): none."""
    return None if v.number(integer=True)(value, name) < 0 else v.positive(value, name)


def _format(fmt, name: str) -> str | None:
    """"json" or a JSON schema, as a grammar."""
    if fmt == "":
        return None
    if fmt == "json":
        return c.response_format({"type": "json_object"}, name)
    if isinstance(fmt, dict):
        return c.json_schema(fmt, name)
    raise bad(f"'{name}' must be \"json\" or a JSON schema", name)


def _think(think, name: str) -> tuple:
    """(reasoning_format, thinking, effort): thinking goes to `thinking`,
    apart from the answer (as Ollama does for thinking models, think unset
    included); false turns the template's thinking off; "low"/"medium"/"high":
    gpt-oss's effort."""
    if think is True:
        return "deepseek", None, None
    if think is False:
        return "deepseek", False, None
    if think in ("low", "medium", "high"):
        return "deepseek", None, think
    raise bad(f"'{name}' must be true, false, \"low\", \"medium\" or \"high\"", name)


def _messages(raw, name: str) -> list:
    """Ollama's messages (thinking, tool_name) as the server's."""
    if not isinstance(raw, list):
        raise bad(f"'{name}' must be a list", name)
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise bad(f"{name}[{i}] must be an object")
        if m.get("images") not in (None, "", [], False):
            raise bad(f"'{name}[{i}].images' is not supported: this server's models take text only")
        msg = {k: val for k, val in m.items() if k not in ("images", "thinking", "tool_name")}
        if m.get("thinking"):
            msg["reasoning_content"] = m["thinking"]
        if m.get("tool_name") is not None:
            msg["name"] = m["tool_name"]
        out.append(msg)
    return c.messages(out, name)


def _unsupported(why: str) -> Field:
    return Field(None, v.refuse(f"is not supported: {why}", allowed=("", [], False)))


OPTIONS = {                     # options Ollama takes per request
    **{key: Field(key, v.SAMPLED[key]) for key in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                                    "repeat_last_n", "seed", "presence_penalty", "frequency_penalty")},
    "stop": Field("stop", v.stops), "num_predict": Field("max_tokens", _num_predict),
    "num_ctx": Field("context_limit", v.positive),
    **{key: Field(None, v.refuse(f"is not supported (only {value!r}, which does nothing)", allowed=(value,)))
       for key, value in NEUTRAL_OPTIONS.items()},
    **{key: Field(None, v.refuse("is set when a model loads: use serve's flags or the model's --config entry",
                                 allowed=())) for key in LOAD_OPTIONS},
}
COMMON = {"model": Field("model", v.text), "format": Field("grammar", _format), "options": Sub(OPTIONS),
          "stream": Field("stream", v.boolean), "keep_alive": Field("keep_alive", v.duration),
          "think": Field(("reasoning_format", "thinking", "reasoning_effort"), _think),
          "logprobs": Field("logprobs", v.boolean),
          "top_logprobs": Field("top_logprobs", v.number(0, v.MAX_TOP_LOGPROBS, integer=True))}
CHAT = {**COMMON, "messages": Field("messages", _messages), "tools": Field("tools", c.tools)}
GENERATE = {**COMMON, "prompt": Field("prompt", v.text), "system": Field("system", v.text),
            "raw": Field("_raw", v.boolean), "images": _unsupported("this server's models take text only"),
            "suffix": _unsupported("fill-in-the-middle is not implemented"),
            "template": _unsupported("the model's own chat template is used (see /api/show)"),
            "context": _unsupported("send the conversation as /api/chat messages instead")}
CHAT_SHAPE = Shape("chat", "messages", stream=True)              # Ollama streams unless told


def chat_request(body: Any) -> GenRequest:
    """/api/chat's body."""
    return build(read(body, CHAT, route="/api/chat"), CHAT_SHAPE)


def generate_request(body: Any) -> GenRequest:
    """/api/generate's (Ollama's) body: the prompt through the template as a
    user turn (with `system`), or as it is with `raw`."""
    f = read(body, GENERATE, route="/api/generate")
    if f.get("prompt") is None:
        raise bad("'prompt' must be a string", "prompt")
    if f.pop("_raw", False):
        if f.get("system") or "reasoning_format" in f.values:
            raise bad("'raw' sends the prompt as it is: 'system' and 'think' cannot apply")
        return build(f, Shape("completions", "prompt", stream=True))
    f.set("messages", [{"role": "user", "content": f.pop("prompt")}], "prompt")
    return build(f, CHAT_SHAPE)


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
    model = v.text(body["model"], "model") if body.get("model") is not None else None
    keep_alive = v.duration(body["keep_alive"], "keep_alive") if body.get("keep_alive") is not None else None
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
