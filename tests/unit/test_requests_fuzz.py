"""parse_request under a fuzz pass, in milliseconds and without a server:
whatever JSON value a client sends to a generation route, it is either a
request or an ApiError with a 4xx status naming what is wrong, never another
exception (which the server would answer with a 500). Hypothesis draws the
bodies; tests/test_server_fuzz.py sends such bodies over HTTP."""
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from shimmy_py.serving.dialects.jobs import GenRequest
from shimmy_py.serving.dialects.parse import parse_request
from shimmy_py.serving.http.errors import ApiError

ROUTES = ["generate", "completions", "chat"]
KEYS = ["prompt", "messages", "system", "max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "stop",
        "stream", "logit_bias", "n", "model", "repeat_penalty", "keep_alive", "chat_template_kwargs",
        "reasoning_effort"]
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.sampled_from(["role", "content", "type", "text", "5", "x", "enable_thinking"]),
                                      inner, max_size=4), max_leaves=12)
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=7) | values


@settings(max_examples=150, deadline=None)
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_any_body_is_a_request_or_a_4xx(route, body):
    body = json.loads(json.dumps(body, allow_nan=True))     # as the server reads it: JSON, NaN allowed
    try:
        req = parse_request(body, route)
    except ApiError as e:
        assert 400 <= e.status < 500 and e.message
        return
    assert isinstance(req, GenRequest)
    s = req.job.sampling
    assert math.isfinite(s.temperature) and s.temperature >= 0 and 0 < s.top_p <= 1
    assert req.job.max_tokens is None or req.job.max_tokens >= 1
    assert (req.job.prompt is None) != (req.job.messages is None) or route == "generate"


# every dialect's translator, under the same pass: its own keys, nested options and content blocks
DIALECT_KEYS = ["model", "messages", "prompt", "options", "format", "think", "stream", "keep_alive", "system", "raw",
                "max_tokens", "stop_sequences", "temperature", "top_k", "thinking", "tools", "tool_choice", "input",
                "instructions", "max_output_tokens", "text", "reasoning", "metadata"]
nested = st.dictionaries(st.sampled_from(["num_predict", "temperature", "num_ctx", "stop", "seed", "type", "role",
                                          "content", "text", "budget_tokens", "effort", "mirostat"]),
                         values, max_size=4)
dialect_bodies = st.dictionaries(st.sampled_from(DIALECT_KEYS), values | nested | st.lists(nested, max_size=3),
                                 max_size=7) | values


def _translators():
    from shimmy_py.serving.dialects import anthropic, ollama, responses
    return {"ollama-chat": ollama.chat_request,
            "ollama-generate": lambda b: ollama.generate_request(b) if isinstance(b, dict) else ollama.chat_request(b),
            "anthropic": anthropic.request, "responses": lambda b: responses.request(b)[0]}


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(_translators())), body=dialect_bodies)
def test_any_body_in_any_dialect_is_a_request_or_a_4xx(name, body):
    body = json.loads(json.dumps(body, allow_nan=True))
    try:
        req = _translators()[name](body)
    except ApiError as e:
        assert 400 <= e.status < 500 and e.message
        return
    assert isinstance(req, GenRequest) and req.job.max_tokens != 0
