"""Conversations kept in host RAM: a conversation whose only slot went to
another request is saved and, when it continues, restored instead of being
decoded again; the tokens equal a fresh prefill's."""

import pytest
from support.batch_noise import assert_decisive
from support.http import metric, post_json
from support.servers import config

from shimmy_py.serving.server import Server

FIRST = "Tell me the whole story of the experts, the routers and the shared layers, " * 3


@pytest.fixture(scope="module")
def card_model(tiny_named):
    return tiny_named("tiny.gguf")


def converse(srv):
    """Turn 1 of conversation A, a request of B taking the only slot, turn 2 of A."""
    _, a1 = post_json(srv.url, "/v1/completions", {"prompt": FIRST, "max_tokens": 8, "temperature": 0})
    post_json(srv.url, "/v1/completions", {"prompt": "Something else entirely", "max_tokens": 4,
                                           "temperature": 0})
    second = FIRST + a1["choices"][0]["text"] + " And then?"
    _, a2 = post_json(srv.url, "/v1/completions", {"prompt": second, "max_tokens": 12, "temperature": 0})
    return second, a2


def test_a_conversation_comes_back_from_host_ram(card_model, model):
    cfg = config(card_model, ctx=512, parallel=1, exact=True,
                      cache_ram=64 << 20)
    with Server(cfg).start() as srv:
        second, a2 = converse(srv)
        assert metric(srv.url, "shimmy_cache_ram_hits_total") == 1
        cached = a2["usage"]["prompt_tokens_details"]["cached_tokens"]
        # turn 1 was not decoded again (its last token merges with the answer's first)
        assert cached >= len(model.tokenize(FIRST)) - 1
        model.reset()                                             # the same weights, from scratch
        fresh = model.generate(second, max_tokens=12, temperature=0)
        assert_decisive(model, model.tokenize(second), fresh.tokens)
        assert a2["choices"][0]["text"] == fresh.text


def test_without_cache_ram_the_conversation_is_decoded_again(card_model, model):
    cfg = config(card_model, ctx=512, parallel=1, exact=True, cache_ram=0)
    with Server(cfg).start() as srv:
        _, a2 = converse(srv)
        assert a2["usage"]["prompt_tokens_details"]["cached_tokens"] < 8    # only what B's prompt shared
