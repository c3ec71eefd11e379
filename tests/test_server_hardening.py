"""The server against hostile but fair clients: floods of idle connections,
clients that leave, malformed HTTP, cross-site pages. Each case failed before
(a crash, a 500, an HTML error, a stalled server or an open door)."""
import json
import logging
import socket
import threading
import time

import pytest
from support.http import address, metric, post_json, raw, request, status_and_json
from support.servers import config

from shimmy_py.serving.server import Server


@pytest.fixture(scope="module")
def model_file(tiny_named):
    return tiny_named("tiny-f32.gguf")


@pytest.fixture(scope="module")
def server(model_file):
    with Server(config(model_file, ctx=512, parallel=2)).start() as srv:
        yield srv






def test_idle_and_slow_connections_cost_no_thread_and_deny_no_service(model_file):
    """1,500 idle connections and 100 slowloris ones (a header byte a second)
    stay open while /health and a completion are answered: each costs the
    event loop a coroutine, not a handler thread. The slow ones are cut when
    their head is not whole within the header timeout (408)."""
    cfg = config(model_file, ctx=256, parallel=1, queue=0, header_timeout=3.0)
    with Server(cfg).start() as srv:
        threads_before = threading.active_count()
        idle = [socket.create_connection(address(srv)) for _ in range(1500)]
        slow = [socket.create_connection(address(srv)) for _ in range(100)]
        stop = threading.Event()

        def drip():
            for s in slow:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.wait(1.0):
                for s in slow:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        pass
        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            time.sleep(1.5)
            assert post_json(srv.url, "/health", None)[0] == 200
            status, body = post_json(srv.url, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "temperature": 0})
            assert status == 200 and body["usage"]["completion_tokens"] == 2
            assert threading.active_count() <= threads_before + 4     # a few lazily started pool threads
            time.sleep(3.0)                                            # past the header timeout
            slow[0].settimeout(5)
            assert slow[0].recv(4096).startswith(b"HTTP/1.1 408")       # cut, with a JSON answer
        finally:
            stop.set()
            dripper.join()
            for s in idle + slow:
                s.close()
        assert post_json(srv.url, "/health", None)[0] == 200


def test_a_burst_of_connections_is_accepted(server):
    assert server.httpd.request_queue_size >= 512
    results = []

    def ask():
        results.append(post_json(server.url, "/health", None)[0])
    threads = [threading.Thread(target=ask) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) in ([200], [200, 503])   # answered, never reset or hung


def test_an_abandoned_non_streaming_request_is_cancelled(server):
    host, port = server.url.removeprefix("http://").split(":")
    before = metric(server.url, "shimmy_generated_tokens_total")
    body = json.dumps({"prompt": "Go on and on", "temperature": 0}).encode()   # no max_tokens: the whole context
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.monotonic() + 30
    # the request holds its model (a lease, taken before it generates): the worker's heartbeat, once a
    # second, could miss a generation that the tiny model finishes within one
    while server.state.inflight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    s.close()
    while (server.state.inflight or metric(server.url, "shimmy_active_sequences")) \
            and time.monotonic() < deadline + 30:
        time.sleep(0.05)
    assert server.state.inflight == 0 and metric(server.url, "shimmy_active_sequences") == 0
    generated = metric(server.url, "shimmy_generated_tokens_total") - before
    assert generated < 500   # the context allowed ~500: it stopped early, for nobody


def test_client_aborts_leave_no_tracebacks(server, caplog):
    host, port = server.url.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO, logger="shimmy_py"):
        for _ in range(5):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n{bad")
            s.close()
        post_json(server.url, "/health", None)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("data, status", [
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (b"BREW /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
    (b"garbage\r\n\r\n", 400),
    (b"PUT /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"HEAD /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405),
    (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}",
     400),
    (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \xc2\xb2\r\n\r\n{}", 400),
    (b"POST /v1/completions HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}", 403),
])
def test_http_errors_are_json(server, data, status):
    answer = raw(server, data)
    if data.startswith(b"HEAD"):   # a HEAD answer has headers only
        assert answer.startswith(b"HTTP/1.1 405") and b"application/json" in answer
        return
    got, body = status_and_json(answer)
    assert got == status and body["error"]


def test_405_names_the_method_to_use(server):
    answer = raw(server, b"DELETE /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"Allow: GET" in answer and status_and_json(answer)[0] == 405


def test_a_chunked_body_is_served(server):
    body = json.dumps({"prompt": "Hi", "max_tokens": 3, "temperature": 0}).encode()
    chunks = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:7], body[7:])) + b"0\r\n\r\n"
    answer = raw(server, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                         b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n" + chunks)
    status, out = status_and_json(answer)
    assert status == 200 and out["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("body", [
    b'{"prompt": "\\ud800", "max_tokens": 2}',
    b"[" * 100000 + b"]" * 100000,
    b'{"prompt": "x", "n": 17}',
    b'{"prompt": "x", "stop": ' + json.dumps(["s"] * 90000).encode() + b"}",
])
def test_client_errors_are_400_not_500(server, body):
    status, _, text = request(server.url, "/v1/completions", raw=body)
    assert status == 400, text
    assert json.loads(text)["error"]["type"] == "invalid_request_error"


def test_a_30000_character_word_does_not_kill_the_server(server):
    status, _, text = request(server.url, "/v1/completions", {"prompt": "a" * 30000, "max_tokens": 2})
    assert status == 400 and "context holds" in text     # tokenized (3751 tokens), then refused
    assert post_json(server.url, "/health", None)[0] == 200


def test_no_cors_by_default_and_the_origin_given(model_file, server):
    _, headers, _ = request(server.url, "/health")
    assert "Access-Control-Allow-Origin" not in headers
    assert raw(server, b"OPTIONS /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    cfg = config(model_file, ctx=256, parallel=1, cors_origin="https://app.example")
    with Server(cfg).start(load=False) as srv:
        _, headers, _ = request(srv.url, "/health")
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_host_names_that_pass(model_file, server):
    for host in (b"127.0.0.1", b"localhost", b"LOCALHOST:11435"):
        answer = raw(server, b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        assert status_and_json(answer)[0] == 200
    cfg = config(model_file, ctx=256, parallel=1, allowed_hosts=("box.lan",))
    with Server(cfg).start(load=False) as srv:
        answer = raw(srv, b"GET /v1/models HTTP/1.1\r\nHost: box.lan:80\r\nConnection: close\r\n\r\n")
        assert status_and_json(answer)[0] == 200


def test_errors_never_show_server_paths(model_file, tmp_path):
    other = tmp_path / "gone-model-q8_0.gguf"
    other.write_bytes(b"x")
    cfg = config(model_file, ctx=256, parallel=1, known_paths=(other,))
    with Server(cfg).start(load=False) as srv:
        other.unlink()                                     # deleted after discovery
        status, body = post_json(srv.url, "/api/models", None)
        assert status == 200 and [m["name"] for m in body["models"]] == ["tiny", "tiny-f32"]
        srv.state.load_error = f"{model_file}: truncated GGUF file"
        status, body = post_json(srv.url, "/health", None)
        assert status == 503 and str(tmp_path) not in json.dumps(body) and "tiny" in body["error"]


def test_the_key_from_the_environment_or_a_file(model_file, tmp_path):
    import os
    import subprocess
    import sys
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    env = {**os.environ, "SHIMMY_API_KEY": "from-env"}
    for extra, key in (([], "from-env"), (["--api-key-file", str(key_file)], "from-file")):
        proc = subprocess.Popen([sys.executable, "-m", "shimmy_py", "serve", "--model", str(model_file),
                                 "--port", "0", "--ctx", "256", "--parallel", "1", "--threads", "2",
                                 "--host", "0.0.0.0", *extra], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            url = None
            for line in proc.stdout:
                if "ready on" in line:
                    url = line.split("ready on ")[1].split()[0].replace("0.0.0.0", "127.0.0.1")
                    break
            assert url
            assert post_json(url, "/v1/models", None)[0] == 401
            assert post_json(url, "/v1/models", None, headers={"Authorization": f"Bearer {key}"})[0] == 200
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        assert "without an API key" not in proc.stderr.read()


def test_beyond_loopback_without_a_key_warns(model_file):
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "shimmy_py", "serve", "--model", str(model_file), "--port", "0",
                             "--ctx", "256", "--parallel", "1", "--threads", "2", "--host", "0.0.0.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "ready on" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "warning: listening on 0.0.0.0 without an API key" in proc.stderr.read()


def test_a_cross_site_page_cannot_run_the_model(model_file, server):
    """A page on another site can POST text/plain without a CORS preflight;
    browsers send its Origin, and such a request is refused before the body
    is read, whatever its content type. curl (no Origin, form-encoded, as the
    model card's example sends it) is served; --cors-origin allows its origin."""
    body = json.dumps({"prompt": "Hi", "max_tokens": 2, "stream": False}).encode()
    for ctype in (b"text/plain", b"application/json", b"application/x-www-form-urlencoded"):
        answer = raw(server, b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
                             b"Content-Type: " + ctype + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                     + body)
        status, out = status_and_json(answer)
        assert status == 403 and "cross-site" in out["error"]
    before = metric(server.url, "shimmy_generated_tokens_total")
    answer = raw(server, b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert status_and_json(answer)[0] == 200
    assert metric(server.url, "shimmy_generated_tokens_total") == before + 2      # only curl's request ran
    cfg = config(model_file, ctx=256, parallel=1, cors_origin="https://app.example")
    with Server(cfg).start() as srv:
        answer = raw(srv, b"OPTIONS /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example\r\n"
                          b"Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 204") and b"Access-Control-Allow-Origin: https://app.example" in answer
        status, _, _ = request(srv.url, "/api/generate", {"prompt": "Hi", "max_tokens": 2, "stream": False},
                               headers={"Origin": "https://app.example"})
        assert status == 200


@pytest.mark.parametrize("data", [
    b"Transfer-Encoding: chunked\r\n\r\n-1\r\n" + b"x" * 4096,
    b"Transfer-Encoding: chunked\r\n\r\n0x1e\r\n" + b"x" * 30 + b"\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n1_e\r\n" + b"x" * 30 + b"\r\n0\r\n\r\n",
    b"Transfer-Encoding: xchunked\r\n\r\n" + b"x" * 30,
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"Host: evil.example\r\nContent-Length: 2\r\n\r\n{}",
])
def test_framing_tricks_are_refused_before_the_body(server, data):
    """Each was accepted by the http.server transport (a -1 chunk read to the
    end of the stream past the 1 MiB limit): RFC 9112's hex chunk sizes, only
    the chunked coding, one Host and one framing header."""
    answer = raw(server, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + data, timeout=10)
    status, body = status_and_json(answer)
    assert status in (400, 501) and body["error"]


def test_the_body_limit_holds_for_chunked_bodies(server):
    chunk = b"x" * 65536
    chunks = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    answer = raw(server, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunks)
    assert status_and_json(answer)[0] == 413
