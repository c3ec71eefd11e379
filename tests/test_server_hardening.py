"""The server against hostile but fair clients: floods of idle connections,
clients that leave, malformed HTTP, cross-site pages. Each case failed before
(a crash, a 500, an HTML error, a stalled server or an open door)."""
import json
import logging
import socket
import threading
import time

import pytest
from support.http import metric, post_json, raw, request, status_and_json
from support.servers import config

from shimmy_py.serving.server import Server


@pytest.fixture(scope="module")
def model_file(tiny_named):
    return tiny_named("tiny-f32.gguf")


@pytest.fixture(scope="module")
def server(model_file):
    with Server(config(model_file, ctx=512, parallel=2)).start() as srv:
        yield srv






def test_idle_connections_beyond_the_cap_get_503_and_health_stays_reachable(model_file):
    cfg = config(model_file, ctx=256, parallel=1, queue=0, max_pending=4,
                      header_timeout=5.0)
    with Server(cfg).start() as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        threads_before = threading.active_count()
        idle = [socket.create_connection((host, int(port))) for _ in range(60)]
        try:
            refused = 0
            for s in idle:            # 9 handler threads and 4 waiting places: the rest is refused at once
                s.settimeout(0.5)
                try:
                    refused += s.recv(4096).startswith(b"HTTP/1.1 503")
                except socket.timeout:
                    pass              # held by a handler thread or waiting for one
            assert refused >= 40
            assert threading.active_count() <= threads_before   # no thread per connection
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:   # idle sockets time out; then health answers
                try:
                    if post_json(srv.url, "/health", None)[0] == 200:
                        break
                except Exception:
                    time.sleep(0.2)
            assert post_json(srv.url, "/health", None)[0] == 200
        finally:
            for s in idle:
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
    while metric(server.url, "shimmy_active_sequences") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    s.close()
    while metric(server.url, "shimmy_active_sequences") and time.monotonic() < deadline + 30:
        time.sleep(0.05)
    assert metric(server.url, "shimmy_active_sequences") == 0
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
    b'{"prompt": "x", "n": 2}',
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
