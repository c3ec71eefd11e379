"""llama-server's utility routes, answered as it answers them: GET /health
(readiness, restarts, stalls), GET /metrics (Prometheus text), POST
/tokenize, /detokenize and /apply-template (a worker's Call: messages.py)."""
from __future__ import annotations

from collections import Counter

from ..http.app import App
from ..http.errors import ApiError
from ..http.exchange import Request, Response
from ..worker import messages as m
from ..worker.figures import COUNTERS
from .known import known_fields
from .parse import parse_request


def health(app: App, req: Request) -> Response:
    s, main = app.state, app.state.main
    w = main.supervisor if main is not None else None
    crash = {"restarts": w.restarts if w else 0, "last_crash": w.last_crash if w else None}
    if s.catalog.name is None:                    # models on demand: the server itself is what is healthy
        stalled = {r.name: r.supervisor.stalled for r in list(s.pool.residents.values()) if r.supervisor.stalled}
        if stalled:
            return Response.json(503, {"status": "error", "ready": False, "stalled": stalled,
                                       "error": "; ".join(f"{n}: {why}" for n, why in stalled.items())})
        return Response.json(200, {"status": "ok", "ready": True, "loaded": sorted(s.pool.residents)})
    if w is not None and w.healthy:
        return Response.json(200, {"status": "ok", "model": s.catalog.name, "ready": True, **crash})
    error = s.load_error or (w.stalled or w.load_error if w else None)
    error = app.scrub(error) if error else None
    return Response.json(503, {"status": "error" if error else "loading", "ready": False, "error": error, **crash})


def metrics(app: App, req: Request) -> Response:
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
    engine = totals if any(r.supervisor.stats for r in residents) or pool.gone else None
    experts = {r.name: r.supervisor.stats["experts"] for r in residents if "experts" in (r.supervisor.stats or {})}
    text = app.state.metrics.render(devices, engine, totals["restarts"], pool, totals["stalls"], experts)
    return Response.text(200, text, "text/plain; version=0.0.4")


def call(app: App, model: str | None, msg) -> object:
    """The model's worker answers one Call (messages.py) under a lease."""
    with app.state.lease(model) as lease:
        return lease.resident.supervisor.call(msg)


def _fields(req: Request, known: set) -> dict:
    body = known_fields(req.json(), known)
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise ApiError(400, "'model' must be a string")
    return body


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{key}' must be true or false")
    return value


def tokenize(app: App, req: Request) -> Response:
    body = _fields(req, {"model", "content", "add_special", "parse_special", "with_pieces"})
    if not isinstance(body.get("content"), str):
        raise ApiError(400, "'content' must be a string")
    with_pieces = _flag(body, "with_pieces", False)
    out = call(app, body.get("model"), m.Tokenize(body["content"], _flag(body, "add_special", False),
                                                   _flag(body, "parse_special", True), with_pieces))
    tokens = [{"id": i, "piece": p} for i, p in out] if with_pieces else out
    return Response.json(200, {"tokens": tokens})


def detokenize(app: App, req: Request) -> Response:
    body = _fields(req, {"model", "tokens"})
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise ApiError(400, "'tokens' must be a list of token ids")
    return Response.json(200, {"content": call(app, body.get("model"), m.Detokenize(tuple(tokens)))})


def apply_template(app: App, req: Request) -> Response:
    gr = parse_request(req.json(), "chat")
    return Response.json(200, {"prompt": call(app, gr.model, m.RenderChat(gr.job))["prompt"]})
