"""HTTP mechanics of the server, apart from its routes.

`PooledHTTPServer` listens with a backlog of 512 and hands connections to a
fixed pool of handler threads through a bounded queue; beyond it a
connection gets an immediate 503 and is closed, so a flood of idle sockets
costs a queue slot each, never a thread each. `JsonHandler` is the handler
base: every answer is JSON (http.server's own errors too), bodies are read by
Content-Length or chunked, idle connections time out, the Host header and the
CORS origin are checked against the policy, and it can tell that a client
went away.
"""
from __future__ import annotations

import json
import logging
import queue
import select
import socket
import socketserver
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from .api import ApiError, openai_error

logger = logging.getLogger("shimmy_py.server")


class ClientGone(Exception):
    """The client closed its connection while its answer was being computed."""


@dataclass(frozen=True)
class HttpPolicy:
    max_body: int
    cors_origin: str | None = None            # None: no CORS headers (browsers refuse cross-origin reads)
    allowed_hosts: frozenset | None = None    # Host header names accepted; None: any
    header_timeout: float = 10.0              # seconds for a request line and headers (and keep-alive idle)
    body_timeout: float = 60.0                # seconds a client may stall mid-body or mid-answer


class PooledHTTPServer(socketserver.TCPServer):
    """A TCP server whose connections are handled by `threads` worker threads;
    at most `max_pending` accepted connections wait for one."""
    allow_reuse_address = True
    request_queue_size = 512     # listen backlog: bursts wait in the kernel, not in SYN retransmits

    def __init__(self, address, handler, threads: int, max_pending: int):
        super().__init__(address, handler)
        self._pending: queue.Queue = queue.Queue(max_pending)
        self._workers = [threading.Thread(target=self._work, name=f"shimmy-http-{i}", daemon=True)
                         for i in range(threads)]
        for w in self._workers:
            w.start()

    def process_request(self, request, client_address) -> None:
        try:
            self._pending.put_nowait((request, client_address))
        except queue.Full:
            self._refuse(request)

    def _refuse(self, request) -> None:
        body = json.dumps({"error": "server busy: too many open connections"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            request.settimeout(1.0)
            request.sendall(head + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def _work(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):      # a client that went away: nothing to report
            return
        logger.exception("error on a connection from %s", client_address)

    def server_close(self) -> None:
        super().server_close()
        for _ in getattr(self, "_workers", ()):   # none when binding failed
            self._pending.put(None)


class JsonHandler(BaseHTTPRequestHandler):
    """Answers in JSON; the routes live in a subclass."""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"   # so that even a garbled request line gets a status line
    server_version = "shimmy-py"
    error_content_type = "application/json"
    policy: HttpPolicy                  # set on the subclass made per server
    drain_limit = 16 << 20              # bytes of an unread body read and dropped before closing

    def setup(self) -> None:
        self.timeout = self.policy.header_timeout
        super().setup()
        # Events are small writes: without TCP_NODELAY, Nagle's algorithm holds
        # each one until the client's (delayed) ACK of the previous arrives.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._status, self._body_unread = 0, False

    # --- errors raised inside http.server (400, 414, 431, 501 ...) -------------
    def send_error(self, code, message=None, explain=None) -> None:
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        try:
            self.send_json(code, {"error": text}, {"Connection": "close"})
        except OSError:
            pass

    def log_message(self, fmt, *args) -> None:
        logger.info("%s %s", self.address_string(), fmt % args)

    # --- checks ---------------------------------------------------------------
    def host_allowed(self) -> bool:
        """DNS rebinding: a page on evil.example whose name resolves to
        127.0.0.1 sends Host: evil.example; only the names the policy allows pass."""
        allowed = self.policy.allowed_hosts
        if allowed is None:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):                      # [::1]:port
            host = host[:host.find("]") + 1]
        else:
            host = host.rsplit(":", 1)[0]
        return host in allowed

    def client_gone(self) -> bool:
        """Whether the client closed its side (a non-streaming answer is being computed)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # --- bodies ---------------------------------------------------------------
    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked, within max_body."""
        self.connection.settimeout(self.policy.body_timeout)
        lengths = self.headers.get_all("Content-Length") or []
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked and lengths:
            raise ApiError(400, "both Content-Length and Transfer-Encoding: chunked")
        self._body_unread = False          # read now, whole or (a stalled client) not at all
        if chunked:
            return self._read_chunked()
        if not lengths:
            raise ApiError(411, "a Content-Length header (or a chunked body) is required")
        if len(set(v.strip() for v in lengths)) > 1:
            raise ApiError(400, f"conflicting Content-Length headers: {', '.join(lengths)}")
        length = lengths[0].strip()
        if not (length.isascii() and length.isdigit()):
            raise ApiError(400, f"Content-Length must be a number of bytes, got {length!r}")
        if int(length) > self.policy.max_body:
            self._body_unread = True
            raise ApiError(413, f"request body of {length} bytes exceeds {self.policy.max_body}")
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024).strip().split(b";", 1)[0]
            try:
                size = int(line, 16)
            except ValueError:
                raise ApiError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():   # trailers
                    pass
                return bytes(body)
            if len(body) + size > self.policy.max_body:
                self.close_connection = True
                raise ApiError(413, f"request body exceeds {self.policy.max_body} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(8)

    def drop_body(self) -> None:
        """After an answer given without reading the body (404, 401, 413): reads
        and drops it, so a client still sending gets that answer instead of a
        connection reset, then closes the connection (the body is not a request)."""
        self.close_connection = True
        length = self.headers.get("Content-Length", "")
        left = min(int(length), self.drain_limit) if length.isascii() and length.isdigit() else 0
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass   # the client went away or stalled: closing is all that is left

    # --- answers ----------------------------------------------------------------
    def _headers(self, extra: dict) -> None:
        if self._body_unread:   # the connection closes after this answer
            extra = {**extra, "Connection": "close"}
        origin = self.policy.cors_origin
        if origin is not None:
            extra = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                     "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                     "Access-Control-Allow-Headers": "Content-Type, Authorization", **extra}
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def send_json(self, status: int, obj, headers: dict | None = None) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode()
        self._status = status
        self.send_response(status)
        self._headers({"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def send_text(self, status: int, text: str, content_type: str) -> None:
        body = text.encode()
        self._status = status
        self.send_response(status)
        self._headers({"Content-Type": content_type, "Content-Length": str(len(body))})
        self.wfile.write(body)

    def send_api_error(self, e: ApiError) -> None:
        if self._status:  # headers already sent (a stream): nothing more can be said
            return
        body = openai_error(e) if self.path.startswith("/v1/") else {"error": e.message}
        try:
            self.send_json(e.status, body, e.headers)
        except OSError:   # the client went away before its error: nothing to say it to
            self.close_connection = True

    def start_sse(self) -> None:
        self._status = 200
        self.send_response(200)
        self._headers({"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "close"})
        self.close_connection = True

    def send_event(self, data: str) -> None:
        """One SSE event; each line of `data` becomes its own data: line."""
        lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.wfile.write(("".join(f"data: {line}\n" for line in lines) + "\n").encode())
        self.wfile.flush()
