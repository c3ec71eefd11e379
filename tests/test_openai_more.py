"""More of OpenAI's API with the official client: embeddings (equal to
llama-server's --embeddings --pooling mean on the same file, and to the
REPL's Model.embed), logprobs and top_logprobs (equal to llama-server's,
which reports the model's distribution before sampling), and n > 1
choices, whole and streamed. Ollama's /api/embed rides on the same
embedding context."""
from __future__ import annotations

import numpy as np
import pytest
from support.http import post_json
from support.servers import config

from shimmy_py import Model
from shimmy_py.native import install
from shimmy_py.procs import ServerProcess, free_port
from shimmy_py.serving.server import Server
from shimmy_py.synthetic import families

TEXTS = ["The quick brown fox", "jumps over the lazy dog", "Hello"]
MESSAGES = [{"role": "user", "content": "Tell me a story"}]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return families.write(tmp_path_factory.mktemp("more") / "qwen3moe.gguf", "qwen3moe", seed=3)


@pytest.fixture(scope="module")
def ours(model_path):
    with Server(config(model_path, ctx=2048, parallel=4)).start() as srv:
        yield srv.url


@pytest.fixture(scope="module")
def theirs(model_path):
    port = free_port()
    argv = [str(install.tool("llama-server")), "-m", str(model_path), "-c", "2048", "-np", "1", "-t", "2",
            "--host", "127.0.0.1", "--port", str(port), "--no-webui", "--jinja", "--embeddings",
            "--pooling", "mean"]
    with ServerProcess(argv, port, timeout=120) as srv:
        yield srv.url


def client(url):
    from openai import OpenAI
    return OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


def vectors(url, texts, **kw) -> np.ndarray:
    r = client(url).embeddings.create(model="qwen3moe", input=texts, **kw)
    assert [d.index for d in r.data] == list(range(len(texts)))
    return np.array([d.embedding for d in r.data])


def test_embeddings_equal_llama_servers_and_the_repls(ours, theirs, model_path):
    mine, peer = vectors(ours, TEXTS), vectors(theirs, TEXTS)     # the client asks for base64 by default
    assert mine.shape == peer.shape == (3, 64)
    np.testing.assert_allclose(mine, peer, rtol=0, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors(ours, TEXTS, encoding_format="float"), mine, atol=1e-6)
    with Model(model_path, n_ctx=2048, n_threads=2) as m:
        np.testing.assert_allclose(m.embed(TEXTS), mine, atol=2e-4)
    status, ollama = post_json(ours, "/api/embed", {"model": "qwen3moe", "input": TEXTS})
    assert status == 200 and ollama["prompt_eval_count"] > 0
    np.testing.assert_allclose(np.array(ollama["embeddings"]), mine, atol=1e-6)
    status, err = post_json(ours, "/v1/embeddings", {"model": "qwen3moe", "input": "x", "dimensions": 8})
    assert status == 400 and "64 dimensions" in err["error"]["message"]


def test_logprobs_equal_llama_servers(ours, theirs):
    kw = dict(model="qwen3moe", messages=MESSAGES, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    mine = client(ours).chat.completions.create(**kw).choices[0]
    peer = client(theirs).chat.completions.create(**kw).choices[0]
    assert mine.message.content == peer.message.content
    assert [t.token for t in mine.logprobs.content] == [t.token for t in peer.logprobs.content]
    for a, b in zip(mine.logprobs.content, peer.logprobs.content):
        assert a.logprob == pytest.approx(b.logprob, abs=2e-3)
        assert [t.token for t in a.top_logprobs] == [t.token for t in b.top_logprobs]
        assert a.top_logprobs[0].token == a.token and a.logprob <= 0      # greedy: the most likely one
    status, legacy = post_json(ours, "/v1/completions", {"model": "qwen3moe", "prompt": "Hi", "max_tokens": 3,
                                                         "temperature": 0, "logprobs": 2})
    lp = legacy["choices"][0]["logprobs"]
    assert status == 200 and len(lp["tokens"]) == 3 and all(len(t) == 2 for t in lp["top_logprobs"])
    streamed = list(client(ours).chat.completions.create(**kw, stream=True))
    content = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in content] == [t.token for t in mine.logprobs.content]


def test_n_choices_whole_and_streamed(ours):
    kw = dict(model="qwen3moe", messages=MESSAGES, temperature=1.0, seed=7, max_tokens=5)
    r = client(ours).chat.completions.create(n=3, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert 3 <= r.usage.completion_tokens <= 15 and r.usage.prompt_tokens > 0     # the prompt counted once
    first = client(ours).chat.completions.create(**kw).choices[0].message.content
    assert r.choices[0].message.content == first          # choice 0 takes the seed, choice i seed + i
    texts: dict[int, str] = {}
    for chunk in client(ours).chat.completions.create(n=3, stream=True, **kw):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
    assert texts == {c.index: c.message.content for c in r.choices}
    greedy = client(ours).chat.completions.create(n=3, **{**kw, "temperature": 0})
    alone = client(ours).chat.completions.create(**{**kw, "temperature": 0}).choices[0].message.content
    assert [c.message.content for c in greedy.choices] == [alone] * 3


def test_n_choices_decode_the_prompt_once(ours):
    """Choices 1..n-1 wait for choice 0's prompt and take it from its cache
    (or find it in their slot), and answer as a lone request: the engine
    decodes the prompt once (shimmy_engine_batch_tokens_total), not n times."""
    from support.http import metric
    long = [{"role": "user", "content": " ".join(["story"] * 200) + " 3"}]
    client(ours).completions.create(model="qwen3moe", prompt="warm", max_tokens=1)
    before = metric(ours, "shimmy_engine_batch_tokens_total")
    r = client(ours).chat.completions.create(model="qwen3moe", messages=long, n=3, temperature=0, max_tokens=4)
    decoded = metric(ours, "shimmy_engine_batch_tokens_total") - before
    assert r.usage.prompt_tokens > 200 and decoded < 1.5 * r.usage.prompt_tokens
    assert len({c.message.content for c in r.choices}) == 1
