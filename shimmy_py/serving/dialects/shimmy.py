"""shimmy's own API: POST /api/generate (raw text pieces as SSE, then
[DONE]; Ollama's answer when the body speaks Ollama: ollama.py) and
GET /api/models (the models found, loaded or not)."""
from __future__ import annotations

from ..http.app import App
from ..http.exchange import Request, Response
from . import ollama
from .parse import parse_request
from .shapes import generate_response
from .streaming import SSEShapes, answer


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


def shimmy_generate(app: App, req: Request) -> Response:
    body = req.json()
    if ollama.speaks_ollama(body, req.headers):
        return ollama.generate(app, req, body)
    return answer(app, req, parse_request(body, "generate"), lambda name, gr, clock: ShimmyShapes(name))


def api_models(app: App, req: Request) -> Response:
    s = app.state
    resident = set(s.pool.residents)
    models = []
    for name, path in sorted(s.catalog.items()):
        try:
            size = path.stat().st_size
        except OSError:           # deleted or unreadable since discovery: not listed
            continue
        loaded = s.catalog.canonical(name) in resident
        d = s.catalog.describe(path)
        models.append({"name": name, "size_bytes": size, "model_type": "gguf",
                       "parameter_count": d.params if d else None,
                       "active_parameter_count": d.active_params if d else None,
                       "architecture": d.architecture if d else None, "quantization": d.quantization if d else None,
                       "loaded": loaded, "source": "loaded" if loaded else "discovered"})
    return Response.json(200, {"models": models})
