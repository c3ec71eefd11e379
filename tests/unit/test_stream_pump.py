"""A streamed answer's chunks are made on a stream thread, which writes them
to the socket itself (connection.py's _pump): against the real transport
over loopback, with an app whose stream never ends (no model): a client
that stops reading holds the stream's thread once the socket is full (the
event loop writes the rest), and is cut after the body timeout, which
closes the stream; one that leaves closes it at the next chunk."""
import socket
import threading
import time

import pytest

from shimmy_py.serving.http.exchange import Response
from shimmy_py.serving.http.policy import HttpPolicy
from shimmy_py.serving.http.transport import HttpServer

CHUNK = 64 << 10


class _Route:
    model = True


class _Metrics:
    def request(self, route, status):
        pass


class _EndlessApp:
    """Every request is answered with a stream of CHUNK-byte chunks that never ends."""

    def __init__(self):
        self.made, self.closed = 0, threading.Event()

    def chunks(self):
        try:
            while True:
                self.made += 1
                yield b"x" * CHUNK
        finally:
            self.closed.set()

    def check(self, req):
        return None

    def route(self, req):
        return _Route()

    def label(self, path):
        return path

    def run(self, req):
        return Response.events(self.chunks())


@pytest.fixture
def endless():
    app = _EndlessApp()
    server = HttpServer(app, _Metrics(), HttpPolicy(max_body=1 << 20, body_timeout=1.0), ("127.0.0.1", 0),
                        model_threads=2, control_threads=2, max_pending=4, stream_threads=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, server.server_address
    server.shutdown(grace_s=1)
    server.server_close()


def _open_stream(address) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(address)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
    return s


def test_a_client_that_stops_reading_holds_a_bounded_stream_and_is_cut(endless):
    app, address = endless
    s = _open_stream(address)
    try:
        assert app.closed.wait(15), "a stream nobody reads must end after the body timeout"
        # what was made: what the kernel's buffers took, one chunk with the transport, one in hand
        assert app.made * CHUNK < 16 << 20
    finally:
        s.close()


def test_a_client_that_leaves_closes_the_stream(endless):
    app, address = endless
    s = _open_stream(address)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    assert app.closed.wait(5)
    made = app.made
    time.sleep(0.3)
    assert app.made == made
