"""The routes: one handler per route, and the table (ROUTES) that names them,
as llama.cpp's server has post_completions, post_tokenize, ... A handler
takes the App and a Request and returns a Response (app.py); a route that
runs a model takes a lease on it (State.lease) for as long as its answer
runs, streamed or not.

Adding a model-backed endpoint: a Route here, a Call message
(messages.py), and the worker method that answers it (worker.py's CALLS).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable

from . import anthropic, embeddings, ollama, ollama_models, responses
from . import messages as m
from .api import parse_request
from .app import Request, Response
from .httperror import ApiError
from .shapes import OpenAIShapes, generate_response, timing
from .streaming import SSEShapes, answer
from .supervisor import COUNTERS

if TYPE_CHECKING:
    from .server import App

@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[["App", Request], Response]
    dialect: str = "shimmy"     # the error shape its clients parse: "openai", "anthropic" or {"error": "..."}
    public: bool = False        # answered without the API key (health checks)
    model: bool = False         # runs a model: its handler runs on the model routes' threads


# --- GET routes ----------------------------------------------------------------------------
def health(app: "App", req: Request) -> Response:
    s, main = app.state, app.state.main
    w = main.supervisor if main is not None else None
    crash = {"restarts": w.restarts if w else 0, "last_crash": w.last_crash if w else None}
    if s.name is None:                    # models on demand: the server itself is what is healthy
        stalled = {r.name: r.supervisor.stalled for r in list(s.pool.residents.values()) if r.supervisor.stalled}
        if stalled:
            return Response.json(503, {"status": "error", "ready": False, "stalled": stalled,
                                       "error": "; ".join(f"{n}: {why}" for n, why in stalled.items())})
        return Response.json(200, {"status": "ok", "ready": True, "loaded": sorted(s.pool.residents)})
    if w is not None and w.healthy:
        return Response.json(200, {"status": "ok", "model": s.name, "ready": True, **crash})
    error = s.load_error or (w.stalled or w.load_error if w else None)
    error = app.scrub(error) if error else None
    return Response.json(503, {"status": "error" if error else "loading", "ready": False, "error": error, **crash})


def v1_models(app: "App", req: Request) -> Response:
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "shimmy-py"}
            for n, path in sorted(app.state.catalog.items()) if path.exists()]   # files removed since: not listed
    return Response.json(200, {"object": "list", "data": data})


def api_models(app: "App", req: Request) -> Response:
    s = app.state
    resident = set(s.pool.residents)
    models = []
    for name, path in sorted(s.catalog.items()):
        try:
            size = path.stat().st_size
        except OSError:           # deleted or unreadable since discovery: not listed
            continue
        loaded = s.canonical(name) in resident
        d = s.describe(path)
        models.append({"name": name, "size_bytes": size, "model_type": "gguf",
                       "parameter_count": d.params if d else None,
                       "active_parameter_count": d.active_params if d else None,
                       "architecture": d.architecture if d else None, "quantization": d.quantization if d else None,
                       "loaded": loaded, "source": "loaded" if loaded else "discovered"})
    return Response.json(200, {"models": models})


def metrics(app: "App", req: Request) -> Response:
    """Counters over every model the server ran (unloaded and restarted ones
    too: they only grow), gauges of the resident ones; from the workers' last
    heartbeats, so a stalled worker never holds this answer up."""
    pool = app.state.pool
    residents = list(pool.residents.values())
    devices: dict[str, int] = {}
    totals = Counter(pool.gone)
    for r in residents:
        w = r.supervisor
        for d, b in w.info.get("devices", {}).items():
            devices[d] = devices.get(d, 0) + b
        totals.update({"restarts": w.restarts, "stalls": w.stalls, **w.counters()})
        totals.update({k: v for k, v in (w.stats or {}).items()
                       if k not in COUNTERS and k != "experts"})   # gauges: resident only
    values = {"queue_depth": 0, "active": 0, "cache_ram_bytes": 0, **totals}
    engine = SimpleNamespace(**values) if any(r.supervisor.stats for r in residents) or pool.gone else None
    experts = {r.name: r.supervisor.stats["experts"] for r in residents if "experts" in (r.supervisor.stats or {})}
    text = app.state.metrics.render(devices, engine, totals["restarts"], pool, totals["stalls"], experts)
    return Response.text(200, text, "text/plain; version=0.0.4")


# --- generations -----------------------------------------------------------------------------
class ShimmyShapes(SSEShapes):
    """shimmy's /api/generate: raw text pieces as SSE, then [DONE]."""

    def __init__(self, model: str):
        self.model = model

    def final(self, c) -> dict:
        return generate_response(self.model, c)

    def piece(self, kind: str, value) -> list:
        return [value] if kind == "content" else []     # shimmy's stream carries the answer's text

    def closing(self, c) -> list:
        return ["[DONE]"]


class OpenAIStreamShapes(SSEShapes, OpenAIShapes):
    """OpenAI's chat and text completions, whole or as chunks; n > 1 choices
    stream one after another, each chunk naming its choice's index."""

    def __init__(self, model: str, chat: bool, include_usage: bool = False):
        OpenAIShapes.__init__(self, model, chat)
        self.include_usage = include_usage

    def final(self, c, more=()) -> dict:
        return {**OpenAIShapes.final(self, c, more), "timings": timing(c)}

    def opening(self) -> list:
        return [json.dumps(self.chunk(None, first=True), ensure_ascii=False)] if self.chat else []

    def piece(self, kind: str, value) -> list:
        if not self.chat and kind != "content":
            return []
        chunk = self.chunk(value if kind != "tool_call" else None, kind=kind, value=value)
        return [json.dumps(chunk, ensure_ascii=False)]

    def choice_end(self, c) -> list:
        return [json.dumps(self.chunk(None, c.finish_reason, c=c), ensure_ascii=False)]

    def next_choice(self) -> None:
        self.index, self.calls = self.index + 1, 0

    def closing(self, c, more=()) -> list:
        last = self.choice_end(c)
        if self.include_usage:
            last.append(json.dumps(self.usage_chunk(c, more), ensure_ascii=False))
        return last + ["[DONE]"]


def shimmy_generate(app: "App", req: Request) -> Response:
    body = req.json()
    if ollama.speaks_ollama(body, req.headers):
        return ollama.generate(app, req, body)
    return answer(app, req, parse_request(body, "generate"), lambda name, gr, clock: ShimmyShapes(name))


def chat_completions(app: "App", req: Request) -> Response:
    return answer(app, req, parse_request(req.json(), "chat"),
                  lambda name, gr, clock: OpenAIStreamShapes(name, True, gr.include_usage))


def completions(app: "App", req: Request) -> Response:
    return answer(app, req, parse_request(req.json(), "completions"),
                  lambda name, gr, clock: OpenAIStreamShapes(name, False, gr.include_usage))


# --- llama-server's utility routes ----------------------------------------------------------
def call(app: "App", model: str | None, msg) -> object:
    """The model's worker answers one Call (messages.py) under a lease."""
    with app.state.lease(model) as lease:
        return lease.resident.supervisor.call(msg)


def _fields(req: Request, known: set) -> dict:
    body = req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    extra = sorted(set(body) - known)
    if extra:
        raise ApiError(400, f"unsupported field {extra[0]!r}")
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise ApiError(400, "'model' must be a string")
    return body


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{key}' must be true or false")
    return value


def tokenize(app: "App", req: Request) -> Response:
    body = _fields(req, {"model", "content", "add_special", "parse_special", "with_pieces"})
    if not isinstance(body.get("content"), str):
        raise ApiError(400, "'content' must be a string")
    with_pieces = _flag(body, "with_pieces", False)
    out = call(app, body.get("model"), m.Tokenize(body["content"], _flag(body, "add_special", False),
                                                   _flag(body, "parse_special", True), with_pieces))
    tokens = [{"id": i, "piece": p} for i, p in out] if with_pieces else out
    return Response.json(200, {"tokens": tokens})


def detokenize(app: "App", req: Request) -> Response:
    body = _fields(req, {"model", "tokens"})
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise ApiError(400, "'tokens' must be a list of token ids")
    return Response.json(200, {"content": call(app, body.get("model"), m.Detokenize(tuple(tokens)))})


def apply_template(app: "App", req: Request) -> Response:
    gr = parse_request(req.json(), "chat")
    return Response.json(200, {"prompt": call(app, gr.model, m.RenderChat(gr))["prompt"]})


ROUTES = (
    Route("GET", "/health", health, public=True),
    Route("GET", "/metrics", metrics),
    Route("GET", "/api/models", api_models),
    Route("GET", "/api/ps", ollama_models.ps),
    Route("POST", "/api/generate", shimmy_generate, model=True),          # shimmy's, or Ollama's (ollama.py)
    Route("POST", "/api/chat", ollama.chat, model=True),
    Route("GET", "/api/tags", ollama_models.tags),
    Route("POST", "/api/show", ollama_models.show),
    Route("GET", "/api/version", ollama_models.version),
    Route("GET", "/v1/models", v1_models, "openai"),
    Route("POST", "/v1/chat/completions", chat_completions, "openai", model=True),
    Route("POST", "/v1/completions", completions, "openai", model=True),
    Route("POST", "/v1/responses", responses.create, "openai", model=True),
    Route("POST", "/v1/embeddings", embeddings.openai_embeddings, "openai", model=True),
    Route("POST", "/api/embed", embeddings.ollama_embed, model=True),
    Route("POST", "/api/embeddings", embeddings.ollama_embeddings, model=True),
    Route("POST", "/v1/messages", anthropic.messages, "anthropic", model=True),
    Route("POST", "/v1/messages/count_tokens", anthropic.count_tokens, "anthropic", model=True),
    Route("POST", "/tokenize", tokenize, model=True),
    Route("POST", "/detokenize", detokenize, model=True),
    Route("POST", "/apply-template", apply_template, model=True),
)
