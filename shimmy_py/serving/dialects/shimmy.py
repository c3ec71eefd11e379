"""shimmy's own API: POST /api/generate (raw text pieces as SSE, then
[DONE]; Ollama's answer when the body speaks Ollama: ollama.py) and
GET /api/models (the models found, loaded or not), POST /api/plan (a
model's placement, planned without loading it)."""
from __future__ import annotations

from ..http.app import App
from ..http.errors import ApiError
from ..http.exchange import Request, Response
from . import ollama
from .known import known_fields
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
    if ollama.speaks_ollama(body, req.headers) or ollama.is_load(body):
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
                       "experts": d.n_expert if d else None, "experts_used": d.n_expert_used if d else None,
                       "loaded": loaded, "source": "loaded" if loaded else "discovered"})
    return Response.json(200, {"models": models})


def api_plan(app: App, req: Request) -> Response:
    """POST /api/plan {"model": NAME}: where every tensor of the model would
    live when it loads here (its --config settings over the server's), planned
    without loading it: `shimmy-py plan --json`'s object, with the model's
    name and file name in place of its path on this machine."""
    from ...placement.plan import to_json
    body = known_fields(req.json(), {"model"}, route="/api/plan")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", field="model")
    s = app.state
    name = s.catalog.resolve(model)
    s.catalog.check_file(name)
    path = s.catalog[name]
    plan = to_json(s.plans.plan(name))
    args = plan["llama_server_args"]
    if args[:1] == ["-m"]:
        args[1] = path.name
    return Response.json(200, {**plan, "model": name, "file": path.name})
