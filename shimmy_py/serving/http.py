"""HTTP mechanics of the server, apart from its routes: the transport.

`PooledHTTPServer` listens with a backlog of 512 and hands connections to a
fixed pool of handler threads through a bounded queue; beyond it a
connection gets an immediate 503 and is closed, so a flood of idle sockets
costs a queue slot each, never a thread each. `JsonHandler` reads each
request into an app.Request (bodies by Content-Length or chunked, when the
application asks), hands it to the App, and writes its Response: JSON or
text whole, a stream chunk by chunk (flushed; closed when the client
leaves). http.server's own errors are JSON too, idle connections time out,
CORS headers follow the policy.
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

from .api import ApiError
from .app import ClientGone, Request, Response

logger = logging.getLogger("shimmy_py.server")


def host_allowed(host: str | None, allowed: frozenset | None) -> bool:
    """DNS rebinding: a page on evil.example whose name resolves to
    127.0.0.1 sends Host: evil.example; only the names allowed pass (None: any)."""
    if allowed is None:
        return True
    host = (host or "").strip().lower()
    if host.startswith("["):                      # [::1]:port
        host = host[:host.find("]") + 1]
    else:
        host = host.rsplit(":", 1)[0]
    return host in allowed


def origin_allowed(origin: str, cors_origin: str | None) -> bool:
    """A browser page may POST here only from the origin serve --cors-origin
    names (or any, with "*"): a cross-site page cannot make it run a model,
    whatever content type it sends (text/plain needs no preflight)."""
    return cors_origin is not None and (cors_origin == "*" or origin.rstrip("/") == cors_origin.rstrip("/"))


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

    # --- the client ---------------------------------------------------------------
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
        """An error of the transport itself (a body it could not read)."""
        if self._status:  # headers already sent (a stream): nothing more can be said
            return
        try:
            self.send_json(e.status, {"error": e.message}, e.headers)
        except OSError:   # the client went away before its error: nothing to say it to
            self.close_connection = True

    # --- the application --------------------------------------------------------
    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self._status, self._body_unread = 0, self.command not in ("GET", "HEAD")
        self.connection.settimeout(self.policy.body_timeout)
        request = Request(self.command, path, self.headers, self.read_body, self.client_gone, query)
        try:
            self.write(self.app.handle(request))
        except (ClientGone, OSError):
            self.close_connection = True          # the client went away: nobody to answer
        finally:
            if self._body_unread:
                self.drop_body()
            self.metrics.request(self.app.label(path), self._status or 499)
            self.connection.settimeout(self.policy.header_timeout)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def write(self, resp: Response) -> None:
        """A Response: whole, or streamed chunk by chunk (a stream closes the
        connection after it; its iterator is closed whatever happens)."""
        if resp.stream is None:
            self._status = resp.status
            self.send_response(resp.status)
            length = {"Content-Length": str(len(resp.body))}
            ctype = {"Content-Type": resp.content_type} if resp.status != 204 else {}
            self._headers({**ctype, **length, **resp.headers})
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            return
        try:
            self._status = resp.status
            self.send_response(resp.status)
            self._headers({"Content-Type": resp.content_type, **resp.headers, "Connection": "close"})
            self.close_connection = True
            for chunk in resp.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            close = getattr(resp.stream, "close", None)
            if close is not None:
                close()


def bound_handler(app, metrics) -> type:
    """The handler class of one server: its App, metrics and HTTP policy."""
    return type("BoundHandler", (JsonHandler,), {"app": app, "metrics": metrics, "policy": app.policy})
