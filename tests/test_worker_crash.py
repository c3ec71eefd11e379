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
from support.http import metric, post_json, read_until, request
from support.servers import config, options

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


def stream_until_error(srv, timeout=60):
    """A long stream; returns (socket, reader thread, result dict) with the stream's error event once it comes."""
    host, port = srv.url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "Go on", "max_tokens": 2000, "temperature": 0, "stream": True}).encode()
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert b"data: " in read_until(s, b"data: ")
    out = {}
    t = threading.Thread(target=lambda: out.update(rest=read_until(s, b"[DONE]", limit=1 << 24).decode()))
    t.start()
    return s, t, out


def test_a_stopped_worker_is_reported_failed_and_restarted_by_the_watchdog(tiny_named):
    """SIGSTOP: the worker neither dies nor answers. Within the watchdog time
    /health is 503 naming why and the stream in flight ends with that error;
    stalled as long again, the worker is killed and restarted."""
    with Server(config(tiny_named("tiny.gguf"), ctx=512, parallel=1, watchdog=2.0)).start() as srv:
        s, t, out = stream_until_error(srv)
        pid = srv.state.main.supervisor.pid
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        status, health = post_json(srv.url, "/health", None)
        while status == 200 and time.monotonic() - t0 < 30:
            time.sleep(0.1)
            status, health = post_json(srv.url, "/health", None)
        assert status == 503 and "has not answered" in health["error"], health
        t.join(timeout=30)
        s.close()
        errors = [ln for ln in out["rest"].splitlines() if ln.startswith('data: {"error"')]
        assert errors and "has not answered" in errors[0]
        status, body = post_json(srv.url, "/api/generate", {"prompt": "x", "stream": False})
        assert status == 503 and "has not answered" in body["error"]
        health = wait_ready(srv)                                    # killed, restarted, loaded again
        assert health["restarts"] == 1 and "killed" in health["last_crash"]
        assert metric(srv.url, "shimmy_worker_stalls_total") == 1
        assert post_json(srv.url, "/api/generate", {"prompt": "x", "max_tokens": 2, "stream": False})[0] == 200


def test_a_stopped_rpc_server_is_reported_by_the_watchdog(tiny_named):
    """SIGSTOP on the ggml-rpc-server holding the model's layers: the worker
    is alive but its decode never returns. /health names the stall within
    the watchdog time; the stream in flight ends with that error."""
    from support.rpc import RPCServer
    with RPCServer() as rpc:
        cfg = config(tiny_named("tiny.gguf"), ctx=512, parallel=1, watchdog=2.0,
                     model=options(cpu_moe=True, rpc=[rpc.endpoint]))
        with Server(cfg).start() as srv:
            s, t, out = stream_until_error(srv)
            os.kill(rpc.proc.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                status, health = post_json(srv.url, "/health", None)
                while status == 200 and time.monotonic() - t0 < 30:
                    time.sleep(0.1)
                    status, health = post_json(srv.url, "/health", None)
                assert status == 503 and "no progress" in health["error"], health
                t.join(timeout=30)
                s.close()
                errors = [ln for ln in out["rest"].splitlines() if ln.startswith('data: {"error"')]
                assert errors and "no progress" in errors[0]
                t0 = time.monotonic()
                status, _, text = request(srv.url, "/metrics")
                assert status == 200 and "shimmy_worker_stalls_total 1" in text   # never waits on the worker
            finally:
                os.kill(rpc.proc.pid, signal.SIGCONT)


def test_a_restarted_worker_keeps_its_share_of_the_cores(tiny_named):
    """The pool's share of the cores (serving/threads.py) outlives a crash:
    the supervisor tells the restarted worker, whose next steps run on it
    (the heartbeat reports the threads its last step ran on)."""
    from shimmy_py.generation.job import Job
    from shimmy_py.generation.sampling import SamplingParams
    from shimmy_py.serving.worker.supervisor import Supervisor, WorkerSpec

    def threads_after_a_request(sup):
        steps = (sup.stats or {}).get("steps", 0)
        pieces = sup.generate(Job("Hello", None, SamplingParams(temperature=0), 4))
        for _ in pieces:
            pass
        deadline = time.monotonic() + 10               # the next heartbeat (every second) counts the steps
        while (sup.stats or {}).get("steps", 0) <= steps and time.monotonic() < deadline:
            time.sleep(0.1)
        return sup.stats["threads"]

    sup = Supervisor(WorkerSpec(str(tiny_named("tiny.gguf")), options(n_ctx=512), 4))
    sup.start()
    try:
        assert threads_after_a_request(sup) == 2
        sup.share_threads(1)
        assert threads_after_a_request(sup) == 1
        os.kill(sup.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while sup.restarts == 0 or not sup.ready.is_set():
            assert time.monotonic() < deadline, "the worker did not come back"
            time.sleep(0.1)
        assert threads_after_a_request(sup) == 1
    finally:
        sup.stop()
