"""A fuzz pass over request bodies: whatever JSON (or not-JSON) a client
sends to the generation routes, the answer is a 2xx or a 4xx in JSON, never
a 5xx, and the server stays up. Hypothesis draws the bodies."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.http import post_json, request
from support.servers import config

from shimmy_py.serving.server import Server

ROUTES = ["/api/generate", "/v1/completions", "/v1/chat/completions"]
KEYS = ["prompt", "messages", "system", "max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "stop",
        "stream", "logit_bias", "n", "model", "repeat_penalty"]
scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | \
    st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.sampled_from(["role", "content", "type", "text", "5", "x"]), inner,
                                      max_size=4), max_leaves=12)
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


@pytest.fixture(scope="module")
def server(tiny_named):
    path = tiny_named("tiny.gguf")
    with Server(config(path, ctx=128, parallel=2)).start() as srv:
        yield srv


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_any_body_gets_a_json_answer_below_500(server, route, body):
    if isinstance(body.get("max_tokens"), int) and not isinstance(body.get("max_tokens"), bool):
        body["max_tokens"] = max(-5, min(body["max_tokens"], 4))     # keep generations short
    else:
        body.setdefault("max_tokens", 2)
    body["stream"] = False if not isinstance(body.get("stream"), bool) else body["stream"]
    raw = json.dumps(body, allow_nan=True).encode()
    status, headers, text = request(server.url, route, raw=raw)
    assert status < 500, (status, text)
    if not body["stream"] or status >= 400:
        json.loads(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_a_json_answer_below_500(server, raw):
    status, _, text = request(server.url, "/v1/completions", raw=raw)
    assert 400 <= status < 500 or status == 200, (status, text)
    json.loads(text)


def test_the_server_is_still_up(server):
    assert post_json(server.url, "/health", None)[0] == 200
