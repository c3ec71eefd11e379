"""Errors in each dialect's shape, from one table (serving/http/errors.py:
SHAPES, PREFIXES): every route names a dialect the table has, and a path no
route answers gets the shape of its prefix. The App runs here over a
stand-in state: no model, no transport."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from shimmy_py.serving.dialects.routes import ROUTES
from shimmy_py.serving.http.app import App, Route
from shimmy_py.serving.http.errors import SHAPES, dialect_of
from shimmy_py.serving.http.exchange import Request
from shimmy_py.serving.http.policy import HttpPolicy


def app(key: str | None = None) -> App:
    state = SimpleNamespace(config=SimpleNamespace(api_key=key), catalog=SimpleNamespace(path_names={}))
    return App(state, HttpPolicy(1 << 20, None, None, 10.0), ROUTES)


def answer(a: App, method: str, path: str) -> tuple[int, dict]:
    r = a.handle(Request(method, path, {"Host": "127.0.0.1"}, lambda: b"{}"))
    return r.status, json.loads(r.body)


def test_every_route_speaks_a_dialect_with_an_error_shape():
    assert {r.dialect for r in ROUTES} <= set(SHAPES)
    with pytest.raises(ValueError, match="no error shape for dialect 'klingon'"):
        Route("GET", "/x", lambda app, req: None, "klingon")


@pytest.mark.parametrize("path, dialect", [("/v1/messages/batches", "anthropic"), ("/v1/nothing", "openai"),
                                           ("/api/nothing", "shimmy"), ("/nothing", "shimmy")])
def test_an_unknown_path_is_answered_in_its_prefix_dialect(path, dialect):
    assert dialect_of(path) == dialect
    status, body = answer(app(), "GET", path)
    assert status == 404
    if dialect == "anthropic":
        assert body == {"type": "error", "error": {"type": "not_found_error", "message": f"no route GET {path}"}}
    elif dialect == "openai":
        assert body["error"]["type"] == "not_found_error" and body["error"]["code"] == 404
        assert body["error"]["message"] == f"no route GET {path}"      # the client's own path, not scrubbed
    else:
        assert body == {"error": f"no route GET {path}"}


def test_server_paths_are_scrubbed_but_the_clients_own_path_is_not():
    from shimmy_py.serving.http.exchange import scrub
    msg = "cannot read /srv/models/secret/m.gguf for GET /v1/x/y"
    assert scrub(msg, {}, keep=("/v1/x/y",)) == "cannot read m.gguf for GET /v1/x/y"
    assert scrub(msg, {"/srv/models/secret/m.gguf": "tiny"}) == "cannot read tiny for GET y"


def test_a_routes_own_dialect_shapes_its_errors():
    status, body = answer(app(key="secret"), "POST", "/v1/messages")          # no key: 401 in Anthropic's shape
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    status, body = answer(app(key="secret"), "POST", "/api/chat")             # Ollama's: {"error": "..."}
    assert status == 401 and set(body) == {"error"}
    status, body = answer(app(), "DELETE", "/v1/chat/completions")
    assert status == 405 and body["error"]["type"] == "invalid_request_error"
