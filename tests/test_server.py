"""`shimmy-py serve` over real HTTP on loopback, against a tiny synthetic model
saved under the flagship's file name, so the model card's example runs as written."""
import json
import socket
import threading
import time

import pytest
from support.batch_noise import assert_decisive
from support.http import address, metric, post_json, read_until, request, sse_events
from support.servers import config

from shimmy_py.serving.server import Server

CARD_REQUEST = {"model": "deepseek-moe-16b", "prompt": "Explain the architecture of DeepSeek MoE",
                "max_tokens": 256, "stream": False}


@pytest.fixture(scope="module")
def card_model(tiny_named):
    return tiny_named("deepseek-moe-16b-f16.gguf")


@pytest.fixture(scope="module")
def server(card_model):
    with Server(config(card_model, ctx=512, parallel=4, exact=True)).start() as srv:
        yield srv








def test_health_and_model_lists(server):
    assert post_json(server.url, "/health", None)[1] == {"status": "ok", "model": "deepseek-moe-16b-f16",
                                                         "ready": True, "restarts": 0, "last_crash": None}
    status, body = post_json(server.url, "/v1/models", None)
    assert status == 200 and body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"deepseek-moe-16b-f16", "deepseek-moe-16b"}
    status, body = post_json(server.url, "/api/models", None)
    assert {m["name"] for m in body["models"]} == {"deepseek-moe-16b-f16", "deepseek-moe-16b"}


def test_model_card_example_works_as_written(server):
    status, body = post_json(server.url, "/api/generate", CARD_REQUEST)
    assert status == 200
    assert body["response"] and body["model"] == "deepseek-moe-16b-f16"
    assert body["completion_tokens"] >= 1 and body["prompt_tokens"] > 1
    assert body["total_tokens"] == body["prompt_tokens"] + body["completion_tokens"]
    assert body["finish_reason"] in ("stop", "length")


def test_generate_streams_by_default_and_round_trips(server):
    base = {"prompt": "Hello", "max_tokens": 40, "temperature": 0}
    status, whole = post_json(server.url, "/api/generate", {**base, "stream": False})
    status, headers, text = request(server.url, "/api/generate", base)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert "Access-Control-Allow-Origin" not in headers   # no CORS unless serve --cors-origin
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    assert "".join(events[:-1]) == whole["response"].replace("\r\n", "\n").replace("\r", "\n")


def test_a_streams_first_token_leaves_with_its_head(server):
    """The handler, which waited for the first piece, makes its chunk, and the
    transport writes it in the head's write: the first token waits on no
    further thread (a head written alone would arrive alone)."""
    body = json.dumps({"prompt": "Hello", "max_tokens": 8, "temperature": 0, "stream": True}).encode()
    host, port = address(server)
    with socket.create_connection((host, port), timeout=60) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (host.encode(), port, len(body)) + body)
        first = s.recv(65536)
    head, _, rest = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"data: " in rest


def test_pieces_with_newlines_survive_sse_framing(server):
    """A logit bias on the newline token (id 185) makes newlines common."""
    body = {"prompt": "Lines", "max_tokens": 60, "temperature": 1.0, "seed": 5, "logit_bias": {"185": 6.0}}
    _, whole = post_json(server.url, "/api/generate", {**body, "stream": False})
    assert whole["response"].count("\n") >= 3 and "\r" not in whole["response"]
    _, _, text = request(server.url, "/api/generate", {**body, "stream": True})
    events = sse_events(text)
    assert any("\n" in e for e in events[:-1])
    assert "".join(events[:-1]) == whole["response"]


def test_openai_chat_and_completions(server):
    status, c = post_json(server.url, "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 7,
                           "temperature": 0, "user": "someone"})         # an optional field that changes nothing
    assert status == 200 and c["object"] == "chat.completion"
    status, err = post_json(server.url, "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "Hi"}], "unknown_field": {"ignored": True}})
    assert status == 400 and "unsupported field 'unknown_field'" in err["error"]["message"]
    assert c["choices"][0]["message"]["role"] == "assistant"
    assert c["choices"][0]["finish_reason"] == "length" and c["usage"]["completion_tokens"] == 7
    _, _, text = request(server.url, "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 7, "temperature": 0,
                          "stream": True})
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks) == \
        c["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    status, t = post_json(server.url, "/v1/completions", {"prompt": "Hi", "max_tokens": 5, "temperature": 0,
                                                          "stop": ["zzzz"], "seed": 3})
    assert status == 200 and t["object"] == "text_completion" and t["usage"]["total_tokens"] > 5


def test_stop_strings_and_finish_reason(server):
    _, full = post_json(server.url, "/v1/completions", {"prompt": "Hello", "max_tokens": 30, "temperature": 0})
    text = full["choices"][0]["text"]
    stop = text[10:13]
    _, cut = post_json(server.url, "/v1/completions", {"prompt": "Hello", "max_tokens": 30, "temperature": 0,
                                                       "stop": stop})
    assert cut["choices"][0]["text"] == text[:text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_beyond_the_context_ends_with_length(server):
    status, body = post_json(server.url, "/v1/completions", {"prompt": "word " * 300, "max_tokens": 100000,
                                                             "temperature": 0})
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["total_tokens"] == 512 + 1


def test_every_sequence_can_fill_its_context_in_the_shared_kv_cache(card_model):
    """The sequences share one KV cache and keep what they decoded for reuse;
    each holds at most its share (--ctx), so all of them filling their context
    at once, after earlier requests left full caches behind, still fits."""
    cfg = config(card_model, ctx=128, parallel=2)
    with Server(cfg).start() as srv:
        for words in ("word", "other"):
            results = [None, None]

            def fill(i, words=words):
                results[i] = post_json(srv.url, "/v1/completions", {
                    "prompt": f"{i} " + f"{words} " * 60, "max_tokens": 1000, "temperature": 0})
            threads = [threading.Thread(target=fill, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for status, body in results:
                assert status == 200, body
                assert body["choices"][0]["finish_reason"] == "length"
                assert body["usage"]["total_tokens"] == 128 + 1


def test_concurrent_greedy_requests_equal_sequential_ones(server, model):
    """Alone, each request decodes one token per llama_decode; together, six
    share each call. The texts must agree; on the default build that proves
    something only because every greedy choice leads by far more than the
    batching spread (asserted), on a --batch-invariant build bit for bit."""
    prompts = [f"Request number {i}: tell me about {w}" for i, w in enumerate(
        ["experts", "routing", "attention", "memory", "GPUs", "tokens"])]
    for p in prompts:   # the same weights (tiny, seed 1), decoding alone in this process
        model.reset()
        assert_decisive(model, model.tokenize(p), model.generate(p, max_tokens=24, temperature=0).tokens)

    def ask(p):
        return post_json(server.url, "/api/generate", {"prompt": p, "max_tokens": 24, "temperature": 0,
                                                       "stream": False})[1]["response"]
    sequential = [ask(p) for p in prompts]
    results = [None] * len(prompts)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, ask(prompts[i])))
               for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == sequential


def test_a_prompt_extending_an_earlier_one_reuses_its_cache(server, model):
    first = "Tell me a story about the experts"
    _, c1 = post_json(server.url, "/v1/completions", {"prompt": first, "max_tokens": 8, "temperature": 0})
    second = first + c1["choices"][0]["text"] + " And then"
    before = metric(server.url, "shimmy_prompt_tokens_cached_total")
    _, c2 = post_json(server.url, "/v1/completions", {"prompt": second, "max_tokens": 16, "temperature": 0})
    cached = c2["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert len(model.tokenize(first)) - 1 <= cached < c2["usage"]["prompt_tokens"]
    assert metric(server.url, "shimmy_prompt_tokens_cached_total") - before == cached
    model.reset()   # the same weights (tiny, seed 1), decoded from scratch
    fresh = model.generate(second, max_tokens=16, temperature=0)
    assert_decisive(model, model.tokenize(second), fresh.tokens)
    assert c2["choices"][0]["text"] == fresh.text






def test_disconnect_mid_stream_frees_the_sequence(server):
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "Go on", "max_tokens": 400, "temperature": 0}).encode()
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert b"data: " in read_until(s, b"data: ")
    s.close()
    deadline = time.monotonic() + 30
    while metric(server.url, "shimmy_active_sequences") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server.url, "shimmy_active_sequences") == 0
    assert post_json(server.url, "/api/generate", {"prompt": "Still there?", "max_tokens": 3,
                                                   "stream": False})[0] == 200


@pytest.mark.parametrize("path, body, status, message", [
    ("/api/generate", {"prompt": 5}, 400, "'prompt' must be str"),
    ("/api/generate", {"max_tokens": 5}, 400, "'prompt' is required"),
    ("/v1/chat/completions", {"prompt": "x"}, 400, "unsupported field 'prompt'"),
    ("/v1/chat/completions", {"model": "deepseek-moe-16b"}, 400, "'messages' is required"),
    ("/api/generate", {"prompt": "x", "max_tokens": 0}, 400, "'max_tokens' must be >= 1"),
    ("/api/generate", {"prompt": "x", "max_tokens": "many"}, 400, "'max_tokens' must be int"),
    ("/api/generate", {"prompt": "x", "temperature": -1}, 400, "'temperature' must be between"),
    ("/api/generate", {"prompt": "x", "stream": "yes"}, 400, "'stream' must be bool"),
    ("/api/generate", {"prompt": "word " * 600, "stream": False}, 400, "context holds"),
    ("/api/generate", {"model": "gpt-4", "prompt": "x"}, 404, "'deepseek-moe-16b'"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "not found"),
    ("/api/generate", [1, 2], 400, "JSON object"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"999999": 1}}, 400, "outside the vocabulary"),
])
def test_bad_requests_get_clear_errors(server, path, body, status, message):
    got, answer = post_json(server.url, path, body)
    assert got == status
    text = answer["error"]["message"] if path.startswith("/v1/") else answer["error"]
    assert message in text
    if path.startswith("/v1/"):
        assert answer["error"]["type"] and answer["error"]["code"] == status


def test_invalid_json_oversized_body_and_unknown_route(server):
    status, _, text = request(server.url, "/api/generate", raw=b"{not json")
    assert status == 400 and "invalid JSON" in json.loads(text)["error"]
    status, _, text = request(server.url, "/v1/completions", raw=b"x" * (2 << 20))
    assert status == 413
    status, _, _ = request(server.url, "/nowhere")
    assert status == 404
    assert post_json(server.url, "/health", None)[0] == 200   # and it goes on serving


def test_a_post_answered_without_its_body_closes_the_connection_cleanly(server):
    """404, 401 and 413 are answered before the body is read: the server reads
    and drops it (the client, still sending, gets the answer, not a reset) and
    closes the connection, so the body is never parsed as the next request."""
    import http.client
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"prompt": "GET /health HTTP/1.1\r\n\r\n"})
    conn.request("POST", "/nowhere", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 404 and resp.getheader("Connection") == "close"
    resp.read()
    conn.request("GET", "/health")   # http.client reconnects after "Connection: close"
    assert conn.getresponse().status == 200
    conn.close()
    for _ in range(5):   # a 2 MiB body: always the 413, never a reset
        status, headers, _ = request(server.url, "/v1/completions", raw=b"x" * (2 << 20))
        assert status == 413 and headers.get("Connection") == "close"


def test_api_key_and_busy_queue(card_model):
    cfg = config(card_model, ctx=512, parallel=1, queue=0, api_key="sekret")
    with Server(cfg).start() as srv:
        assert post_json(srv.url, "/v1/models", None)[0] == 401
        status, body = post_json(srv.url, "/v1/models", None, headers={"Authorization": "Bearer wrong"})
        assert status == 401 and body["error"]["type"] == "authentication_error"
        auth = {"Authorization": "Bearer sekret"}
        assert post_json(srv.url, "/v1/models", None, headers=auth)[0] == 200
        host, port = srv.url.removeprefix("http://").split(":")
        body = json.dumps({"prompt": "Long", "max_tokens": 500, "temperature": 0}).encode()
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sekret\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert b"data: " in read_until(s, b"data: ")          # the only sequence is busy
        status, headers, _ = request(srv.url, "/api/generate", {"prompt": "x", "stream": False}, headers=auth)
        s.close()
        assert status == 503 and headers["Retry-After"] == "1"


def test_busy_port_is_a_clear_error(server, card_model):
    from shimmy_py.errors import ShimmyError
    with pytest.raises(ShimmyError, match="in use"):
        Server(config(card_model, port=server.port))


def test_health_is_503_while_loading_and_generate_waits_for_the_model(card_model):
    srv = Server(config(card_model, ctx=512, parallel=1)).start(load=False)
    try:
        status, body = post_json(srv.url, "/health", None)
        assert status == 503 and body["status"] == "loading"
        status, headers, _ = request(srv.url, "/api/generate", {"prompt": "x", "stream": False})
        assert status == 503 and headers["Retry-After"]
        srv.state.load()
        assert post_json(srv.url, "/health", None)[0] == 200
    finally:
        srv.stop()


def test_generate_with_messages_and_system_uses_the_chat_template(server, model):
    body = {"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
            "temperature": 0, "stream": False}
    status, out = post_json(server.url, "/api/generate", body)
    assert status == 200
    expected_prompt = "Be brief.\n\nUser: Hi\n\nAssistant:"
    assert out["prompt_tokens"] == len(model.tokenize(expected_prompt))   # the same tokenizer, in this process
