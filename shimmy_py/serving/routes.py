"""The routes: one handler per route, and the table (ROUTES) that names them,
as llama.cpp's server has post_completions, post_tokenize, ... A handler
takes the App and a Request and returns a Response (app.py); a route that
runs a model takes a lease on it (State.lease) for as long as its answer
runs, streamed or not.

Adding a model-backed endpoint: a Route here, a Call message
(messages.py), and the worker method that answers it (worker.py's CALLS).
"""
from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import ShimmyError
from ..generation.loop import drain
from .api import parse_request
from .app import ClientGone, Request, Response, as_api_error, sse
from .shapes import OpenAIShapes, generate_response, timing
from .supervisor import COUNTERS

if TYPE_CHECKING:
    from .server import App

CLIENT_CHECK_EVERY = 8          # pieces between checks that a non-streaming client is still there


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[["App", Request], Response]
    dialect: str = "shimmy"     # the error shape its clients parse: "openai" or shimmy's {"error": "..."}
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


def api_ps(app: "App", req: Request) -> Response:
    return Response.json(200, {"models": app.state.pool.snapshot()})


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
        totals.update({k: v for k, v in (w.stats or {}).items() if k not in COUNTERS})   # gauges: resident only
    values = {"queue_depth": 0, "active": 0, "cache_ram_bytes": 0, **totals}
    engine = SimpleNamespace(**values) if any(r.supervisor.stats for r in residents) or pool.gone else None
    text = app.state.metrics.render(devices, engine, totals["restarts"], pool, totals["stalls"])
    return Response.text(200, text, "text/plain; version=0.0.4")


# --- generations -----------------------------------------------------------------------------
class ShimmyShapes:
    """shimmy's /api/generate: raw text pieces as SSE, then [DONE]."""

    def __init__(self, model: str):
        self.model = model

    def final(self, c) -> dict:
        return generate_response(self.model, c)

    def opening(self) -> list[str]:
        return []

    def piece(self, kind: str, value) -> str | None:
        return value if kind == "content" else None     # shimmy's stream carries the answer's text

    def closing(self, c) -> list[str]:
        return ["[DONE]"]


class OpenAIStreamShapes(OpenAIShapes):
    """OpenAI's chat and text completions, whole or as chunks."""

    def __init__(self, model: str, chat: bool, include_usage: bool = False):
        super().__init__(model, chat)
        self.include_usage = include_usage

    def final(self, c) -> dict:
        return {**super().final(c), "timings": timing(c)}

    def opening(self) -> list[str]:
        return [json.dumps(self.chunk(None, first=True), ensure_ascii=False)] if self.chat else []

    def piece(self, kind: str, value) -> str | None:
        if not self.chat and kind != "content":
            return None
        chunk = self.chunk(value if kind != "tool_call" else None, kind=kind, value=value)
        return json.dumps(chunk, ensure_ascii=False)

    def closing(self, c) -> list[str]:
        last = [json.dumps(self.chunk(None, c.finish_reason, c=c), ensure_ascii=False)]
        if self.include_usage:
            last.append(json.dumps(self.usage_chunk(c), ensure_ascii=False))
        return last + ["[DONE]"]


def _generation(app: "App", req: Request, route: str, shapes) -> Response:
    """Parses the request, leases its model, submits it; a whole answer or a stream."""
    gr = parse_request(req.json(), route)
    lease = app.state.lease(gr.model, gr.keep_alive)
    try:
        pieces = lease.resident.supervisor.generate(gr)   # the worker tokenizes and queues it
    except BaseException:
        lease.close()
        raise
    shape = shapes(lease.name, gr)
    if gr.stream:
        return Response.events(_stream(app, pieces, shape, lease))
    with lease:
        c = drain(pieces, _client_check(req))
        app.state.metrics.completion(c)
        return Response.json(200, shape.final(c))


def _client_check(req: Request):
    """A non-streaming answer checks every few pieces that its client is still
    there; one that left ends the generation (its sequence is freed)."""
    count = 0

    def check(_piece: str) -> None:
        nonlocal count
        count += 1
        if count % CLIENT_CHECK_EVERY == 0 and req.client_gone():
            raise ClientGone()
    return check


def _stream(app: "App", pieces, shape, lease) -> Iterator[bytes]:
    """The events of a streamed answer. If the model fails meanwhile (its
    worker died), the stream ends with an error event: its status was sent.
    Closed early (the client left), it cancels the generation."""
    with lease, contextlib.closing(pieces):
        for event in shape.opening():
            yield sse(event)
        while True:
            try:
                piece = next(pieces)
            except StopIteration as done:
                c = done.value
                break
            except ShimmyError as e:
                err = as_api_error(e)
                yield sse(json.dumps({"error": {"message": app.scrub(err.message), "type": err.kind,
                                                "code": err.status}}))
                yield sse("[DONE]")
                return
            event = shape.piece(*piece)
            if event is not None:
                yield sse(event)
        app.state.metrics.completion(c)
        for event in shape.closing(c):
            yield sse(event)


def shimmy_generate(app: "App", req: Request) -> Response:
    return _generation(app, req, "generate", lambda name, gr: ShimmyShapes(name))


def chat_completions(app: "App", req: Request) -> Response:
    return _generation(app, req, "chat", lambda name, gr: OpenAIStreamShapes(name, True, gr.include_usage))


def completions(app: "App", req: Request) -> Response:
    return _generation(app, req, "completions", lambda name, gr: OpenAIStreamShapes(name, False, gr.include_usage))


ROUTES = (
    Route("GET", "/health", health, public=True),
    Route("GET", "/metrics", metrics),
    Route("GET", "/api/models", api_models),
    Route("GET", "/api/ps", api_ps),
    Route("POST", "/api/generate", shimmy_generate, model=True),
    Route("GET", "/v1/models", v1_models, "openai"),
    Route("POST", "/v1/chat/completions", chat_completions, "openai", model=True),
    Route("POST", "/v1/completions", completions, "openai", model=True),
)
