"""Embeddings over HTTP: OpenAI's POST /v1/embeddings (text or token-id
inputs, float or base64 encoding, as the openai client asks by default) and
Ollama's POST /api/embed (and its older /api/embeddings), answered by the
model worker's pooled-embedding context (generation/embedding.py):
L2-normalized, as llama-server and Ollama return them, except the older
Ollama route, which returns them as computed."""
from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np

from ..durations import BadDuration, parse_duration
from ..http.app import App
from ..http.errors import bad
from ..http.exchange import Request, Response
from ..worker import messages as m
from .known import known_fields

MAX_INPUTS = 2048


def _body(req: Request, known: set) -> dict:
    body = known_fields(req.json(), known)
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise bad("'model' must be a string")
    return body


def _inputs(value: Any, tokens_allowed: bool) -> tuple:
    """A string, a list of strings, a list of token ids or a list of those."""
    ids = lambda v: isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)  # noqa: E731
    if isinstance(value, str):
        items = [value]
    elif tokens_allowed and ids(value):
        items = [tuple(value)]
    elif isinstance(value, list) and value:
        items = []
        for i, v in enumerate(value):
            if isinstance(v, str):
                items.append(v)
            elif tokens_allowed and ids(v):
                items.append(tuple(v))
            else:
                raise bad(f"'input'[{i}] must be a string" + (" or a list of token ids" if tokens_allowed else ""))
    else:
        raise bad("'input' must be a string or a non-empty list" + (" (of strings or token ids)"
                                                                     if tokens_allowed else " of strings"))
    if len(items) > MAX_INPUTS:
        raise bad(f"'input' holds {len(items)} items; at most {MAX_INPUTS}")
    if any(isinstance(i, str) and not i for i in items):
        raise bad("'input' holds an empty string: it has no embedding")
    return tuple(items)


def _embed(app: App, model: str | None, inputs: tuple, normalize: bool, keep_alive=None) -> tuple:
    """(the worker's answer, seconds waiting for the model, its name)."""
    t0 = time.monotonic()
    with app.state.lease(model, keep_alive) as lease:
        load_s = time.monotonic() - t0
        return lease.resident.supervisor.call(m.Embed(inputs, normalize)), load_s, lease.name


def _dimensions(body: dict, n: int) -> None:
    if body.get("dimensions") is not None and body["dimensions"] != n:
        raise bad(f"'dimensions' {body['dimensions']!r}: this model's embeddings have {n} dimensions")


def openai_embeddings(app: App, req: Request) -> Response:
    body = _body(req, {"model", "input", "encoding_format", "dimensions", "user"})
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad("'encoding_format' must be \"float\" or \"base64\"")
    out, _, name = _embed(app, body.get("model"), _inputs(body.get("input"), True), True)
    rows = out["embeddings"]
    _dimensions(body, len(rows[0]))
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(np.asarray(r, "<f4").tobytes()).decode() if fmt == "base64"
             else [float(x) for x in r]} for i, r in enumerate(rows)]
    return Response.json(200, {"object": "list", "data": data, "model": name,
                               "usage": {"prompt_tokens": out["tokens"], "total_tokens": out["tokens"]}})


def _keep_alive(body: dict):
    try:
        return parse_duration(body["keep_alive"]) if body.get("keep_alive") is not None else None
    except BadDuration as e:
        raise bad(str(e)) from None


def ollama_embed(app: App, req: Request) -> Response:
    body = _body(req, {"model", "input", "truncate", "options", "keep_alive", "dimensions"})
    # truncate: Ollama cuts inputs longer than the context by default; here such an input is an error
    # naming its length, whatever truncate says (never a silently shortened input)
    if body.get("options"):
        raise bad("'options' are not used by /api/embed here (the embedding context is set at load)")
    t0 = time.monotonic()
    out, load_s, name = _embed(app, body.get("model"), _inputs(body.get("input"), False), True, _keep_alive(body))
    _dimensions(body, len(out["embeddings"][0]))
    total = time.monotonic() - t0
    return Response.json(200, {"model": name, "embeddings": [[float(x) for x in r] for r in out["embeddings"]],
                               "total_duration": int(total * 1e9), "load_duration": int(load_s * 1e9),
                               "prompt_eval_count": out["tokens"]})


def ollama_embeddings(app: App, req: Request) -> Response:
    """Ollama's older route: one prompt, the embedding as computed (not normalized)."""
    body = _body(req, {"model", "prompt", "options", "keep_alive"})
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise bad("'prompt' must be a non-empty string")
    if body.get("options"):
        raise bad("'options' are not used by /api/embeddings here")
    out, _, _ = _embed(app, body.get("model"), (body["prompt"],), False, _keep_alive(body))
    return Response.json(200, {"embedding": [float(x) for x in out["embeddings"][0]]})
