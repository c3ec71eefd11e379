"""Each dialect's request translated to the job a model computes, without a
server (as Ollama's converter tests): the fields land where they mean the
same, an error names the field as the client spelled it, and the bounds of
a sampling number are SamplingParams' own, so HTTP and the Python API
accept and refuse the same values."""
from __future__ import annotations

import math

import pytest

from shimmy_py.errors import GenerationError
from shimmy_py.generation.sampling import BOUNDS, SamplingParams
from shimmy_py.serving.dialects import anthropic, ollama, responses
from shimmy_py.serving.dialects.parse import parse_request
from shimmy_py.serving.http.errors import ApiError

ASK = [{"role": "user", "content": "Hi"}]


def test_ollama_options_become_the_job():
    gr = ollama.chat_request({"model": "m", "messages": ASK, "stream": False, "keep_alive": "5m",
                              "options": {"num_predict": 7, "temperature": 0.2, "top_k": 3, "seed": 9, "stop": ["x"],
                                          "num_ctx": 512}})
    j = gr.job
    assert (j.max_tokens, j.sampling.temperature, j.sampling.top_k, j.sampling.seed, j.stop, j.context_limit) == \
        (7, 0.2, 3, 9, ("x",), 512)
    assert (gr.model, gr.stream, gr.keep_alive) == ("m", False, 300.0)


def test_anthropic_and_responses_fields_become_the_job():
    a = anthropic.request({"model": "m", "max_tokens": 5, "messages": ASK, "stop_sequences": ["END"],
                           "temperature": 0.1, "top_k": 4})
    assert (a.job.max_tokens, a.job.stop, a.job.sampling.temperature, a.job.sampling.top_k) == (5, ("END",), 0.1, 4)
    r, _ = responses.request({"model": "m", "input": "Hi", "max_output_tokens": 6, "temperature": 0.3})
    assert (r.job.max_tokens, r.job.sampling.temperature) == (6, 0.3)
    assert r.job.messages[-1] == {"role": "user", "content": "Hi"}


@pytest.mark.parametrize("translate, named", [
    (lambda: ollama.chat_request({"model": "m", "messages": ASK, "options": {"num_predict": "x"}}),
     "'options.num_predict'"),
    (lambda: ollama.chat_request({"model": "m", "messages": ASK, "options": {"temperature": 500}}),
     "'options.temperature' must be between 0.0 and 100.0"),
    (lambda: ollama.generate_request({"model": "m", "prompt": "Hi", "options": {"stop": [1]}}), "'options.stop'"),
    (lambda: anthropic.request({"model": "m", "max_tokens": 5, "messages": ASK, "stop_sequences": "x" * 2000}),
     "'stop_sequences'"),
    (lambda: responses.request({"model": "m", "input": "Hi", "max_output_tokens": 0}), "'max_output_tokens'"),
], ids=["ollama-num_predict", "ollama-temperature", "ollama-stop", "anthropic-stop_sequences",
        "responses-max_output_tokens"])
def test_errors_name_the_field_as_the_client_spelled_it(translate, named):
    with pytest.raises(ApiError) as e:
        translate()
    assert named in e.value.message and e.value.status == 400
    assert "max_tokens" not in e.value.message or "max_tokens" in named


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_http_and_the_python_api_share_each_bound(name):
    lo, hi, integer = BOUNDS[name]
    for value in [v for v in (lo, hi) if v is not None]:          # the bounds themselves: taken by both
        parse_request({"prompt": "x", name: value}, "completions")
        SamplingParams.build(**{name: value}).validate()
    outside = [v for v in ((lo - 1) if lo is not None else None, (hi + 1) if hi is not None else None)
               if v is not None]
    for value in outside:                                          # beyond them: refused by both
        with pytest.raises(ApiError, match=f"'{name}'"):
            parse_request({"prompt": "x", name: value}, "completions")
        with pytest.raises(GenerationError, match=f"{name} must be"):
            SamplingParams.build(**{name: value}).validate()


def test_the_python_api_refuses_what_http_refuses():
    with pytest.raises(GenerationError, match=r"temperature must be >= 0.0 and <= 100.0, got 1000000.0"):
        SamplingParams(temperature=1e6).validate()
    with pytest.raises(GenerationError, match="repeat_last_n"):
        SamplingParams(repeat_last_n=1 << 30).validate()
    with pytest.raises(GenerationError, match="temperature"):
        SamplingParams(temperature=math.nan).validate()
