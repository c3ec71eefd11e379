"""HTTP over real loopback for the server tests: requests with any body or
raw bytes, SSE parsing as the spec says, and metrics read back."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request


def request(url, path, body=None, method=None, headers=None, raw: bytes | None = None):
    """(status, headers, text) of one request; an HTTP error is an answer too."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def post_json(url, path, body, **kw):
    """(status, JSON answer); with body None, a GET."""
    status, headers, text = request(url, path, body, **kw)
    return status, json.loads(text)


def sse_events(text: str) -> list[str]:
    """Parses an SSE body per the spec: data lines joined with newlines."""
    events, data = [], None
    for line in text.split("\n"):
        if line == "":
            if data is not None:
                events.append("\n".join(data))
            data = None
        elif line.startswith("data:"):
            value = line[5:]
            data = (data or []) + [value[1:] if value.startswith(" ") else value]
    return events


def metric(url, name):
    """One value of /metrics."""
    _, _, text = request(url, "/metrics")
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def read_until(sock, marker: bytes, limit: int = 1 << 16) -> bytes:
    got = b""
    while marker not in got and len(got) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def address(srv) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return host.strip("[]"), int(port)


def raw(srv, data: bytes, timeout: float = 30) -> bytes:
    """Sends raw bytes on a new connection; returns all the server answers until it closes."""
    with socket.create_connection(address(srv), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
            if b"\r\n\r\n" in got and b"Connection: close" not in got and len(got) > 64:
                head, _, body = got.partition(b"\r\n\r\n")
                length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                if length and len(body) >= int(length[0].split(b":")[1]):
                    break
        return got


def status_and_json(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head, head
    return status, json.loads(body)
