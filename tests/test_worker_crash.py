"""A native crash in serving is contained: the model lives in a worker
process; when it dies (SIGKILL here, SIGABRT as llama.cpp's asserts raise)
the requests in flight fail with a message naming the signal, the server
keeps answering, counts the restart in /health and /metrics, and serves
again once the worker has reloaded the model."""
import json
import os
import signal
import socket
import threading
import time

import pytest
from support.http import metric, post_json, read_until
from support.servers import config

from shimmy_py import synth
from shimmy_py.serving.server import Server


@pytest.fixture(scope="module")
def server(tiny_named):
    path = tiny_named("tiny.gguf")
    with Server(config(path, ctx=512, parallel=2)).start() as srv:
        yield srv


def wait_ready(srv, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = post_json(srv.url, "/health", None)
        if status == 200:
            return body
        time.sleep(0.1)
    raise AssertionError("the worker did not come back")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT])
def test_a_worker_killed_mid_stream(server, sig):
    restarts = wait_ready(server)["restarts"]
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "Go on", "max_tokens": 400, "temperature": 0, "stream": True}).encode()
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert b"data: " in read_until(s, b"data: ")
    non_streaming = {}
    t = threading.Thread(target=lambda: non_streaming.update(r=post_json(
        server.url, "/api/generate", {"prompt": "Long", "max_tokens": 400, "stream": False})))
    t.start()
    time.sleep(0.3)
    os.kill(server.state.main.supervisor.pid, sig)
    rest = read_until(s, b"[DONE]", limit=1 << 22).decode()
    s.close()
    t.join(timeout=60)
    name = signal.Signals(sig).name
    errors = [json.loads(ln[6:]) for ln in rest.splitlines() if ln.startswith('data: {"error"')]
    assert errors and name in errors[0]["error"]["message"]           # the stream says what happened
    status, answer = non_streaming["r"]
    assert status == 503 and name in answer["error"]                   # and so does a waiting request
    assert post_json(server.url, "/v1/models", None)[0] == 200          # the server never stopped answering
    health = wait_ready(server)
    assert health["restarts"] == restarts + 1 and name in health["last_crash"]
    assert metric(server.url, "shimmy_worker_restarts_total") == restarts + 1
    status, out = post_json(server.url, "/api/generate", {"prompt": "Again", "max_tokens": 3, "stream": False})
    assert status == 200 and out["completion_tokens"] == 3


def test_requests_while_the_worker_restarts_get_503_with_retry_after(server):
    wait_ready(server)
    os.kill(server.state.main.supervisor.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.state.ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    from support.http import request
    status, headers, text = request(server.url, "/api/generate", {"prompt": "x", "stream": False})
    if status != 200:                     # unless the worker was already back
        assert status == 503 and headers["Retry-After"]
    wait_ready(server)


def test_a_server_started_from_a_script_on_stdin(tmp_path):
    """The worker is `python -m shimmy_py.serving.worker`, never a re-import
    of the caller's __main__, so a script piped to `python -` can serve."""
    import subprocess
    import sys
    path = synth.write(tmp_path / "tiny.gguf", "tiny", seed=1)
    script = f"""
from pathlib import Path
from shimmy_py.generation.options import ModelOptions
from shimmy_py.serving.server import ServeConfig, Server
import json, urllib.request
config = ServeConfig(Path({str(path)!r}), port=0, ctx=256, parallel=1, model=ModelOptions(n_threads=2))
with Server(config).start() as srv:
    req = urllib.request.Request(srv.url + "/api/generate", method="POST", data=json.dumps(
        {{"prompt": "Hello", "max_tokens": 3, "temperature": 0, "stream": False}}).encode())
    print("ANSWER", json.load(urllib.request.urlopen(req, timeout=120))["done"])
"""
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ANSWER True" in out.stdout


def test_large_requests_at_once_reach_the_worker_whole(server):
    """Several handler threads send ~1 MB prompts to the worker at once: each
    message crosses the socket whole (before: interleaved writes, the worker
    read garbage, exited and every request got 503)."""
    wait_ready(server)
    restarts = post_json(server.url, "/health", None)[1]["restarts"]
    statuses = []

    def ask(i):
        prompt = (f"w{i} " * 150000)[:900000]                 # far over the context: a 400, after the pipe
        statuses.append(post_json(server.url, "/v1/completions", {"prompt": prompt, "max_tokens": 2})[0])
    for _ in range(4):
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert set(statuses) == {400}, statuses
    assert post_json(server.url, "/health", None)[1]["restarts"] == restarts
