"""OpenAI's streamed chat and text completions, shaped without a server:
usage goes out once per stream (LangChain adds the usage of every chunk, so
a usage sent twice reported twice the tokens), and every chat chunk
validates as the openai client's own type (its text completions type
requires a finish_reason in every chunk, which no server's stream has: the
client builds those without validating)."""
from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletionChunk

from shimmy_py.generation.loop import Completion
from shimmy_py.serving.dialects.openai import OpenAIStreamShapes

DONE = Completion(text="Hi there", finish_reason="length", prompt_tokens=11, completion_tokens=8)


def stream(chat: bool, include_usage: bool, c: Completion = DONE) -> list[dict]:
    shapes = OpenAIStreamShapes("tiny", chat, include_usage)
    events = shapes.opening() + shapes.piece("content", "Hi") + shapes.piece("content", " there") + shapes.closing(c)
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def usage_added_up(chunks: list[dict]) -> int:
    """What a client that adds every chunk's usage (LangChain) reports."""
    return sum((ch.get("usage") or {}).get("completion_tokens", 0) for ch in chunks)


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "text"])
@pytest.mark.parametrize("include_usage", [True, False], ids=["include_usage", "plain"])
def test_usage_is_sent_once(chat, include_usage):
    chunks = stream(chat, include_usage)
    assert usage_added_up(chunks) == DONE.completion_tokens
    with_usage = [ch for ch in chunks if ch.get("usage")]
    assert len(with_usage) == 1
    if include_usage:      # OpenAI's place for it: the last chunk, with no choices
        assert with_usage[0] is chunks[-1] and chunks[-1]["choices"] == []
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    else:                  # else the chunk that ends the choice carries it
        assert with_usage[0]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_chunks_validate_as_the_openai_client_type(include_usage):
    for ch in stream(True, include_usage):
        ChatCompletionChunk.model_validate(ch)
