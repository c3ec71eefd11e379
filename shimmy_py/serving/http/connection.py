"""One client connection of the HTTP transport (transport.py): h11 parses
its bytes; requests are read and answered one after another (keep-alive).

A request's head must arrive whole within `header_timeout` (which is also the
keep-alive idle limit), its body within `body_timeout`, at most `max_body`
bytes whatever the framing; a head over MAX_HEAD bytes is 431 (a request
line alone that long, 414). Chunk sizes that are not hex digits, transfer
codings other than chunked, duplicate Host, Content-Length or
Transfer-Encoding headers, and Content-Length beside Transfer-Encoding are
refused before a body byte is taken. The App checks the head first (Host,
Origin, route, key), so a refusal never reads the body (what the client
still sends is read and dropped, bounded, so that it hears the answer).
A stream's chunks are written as they come (chunked encoding), each flushed;
a client that leaves closes the stream, which cancels its generation; a
non-streaming handler can ask whether its client is still there.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from typing import Iterator

import h11

from ...errors import Unavailable
from .errors import ApiError
from .exchange import ClientGone, Request, Response
from .policy import HttpPolicy

logger = logging.getLogger("shimmy_py.server")

MAX_HEAD = 16 << 10             # bytes of a request line and headers (h11's own default)
MAX_HEADERS = 100               # header fields of one request (http.server's limit too)
DRAIN_LIMIT = 16 << 20          # bytes of an unread body read and dropped before closing, so the client hears us


def _close(chunks: Iterator[bytes]) -> None:
    """Closes a stream's iterator (a generator's close ends its generation)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


class Headers:
    """A request's headers, case-insensitive, from h11's (name, value) pairs."""

    def __init__(self, pairs):
        self._items = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in pairs]

    def get(self, name: str, default=None):
        name = name.lower()
        return next((v for k, v in self._items if k == name), default)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _duplicates(head: bytes) -> str | None:
    """A framing header h11 would merge or take one of: named so it is refused."""
    names = [line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")[1:] if b":" in line]
    for name in (b"content-length", b"transfer-encoding"):
        if names.count(name) > 1:
            return name.decode()
    if b"content-length" in names and b"transfer-encoding" in names:
        return "content-length beside transfer-encoding"
    return None


class Connection:
    """One client connection: requests one after another (keep-alive)."""

    def __init__(self, server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.policy: HttpPolicy = server.policy
        self.gone = threading.Event()        # the client closed its side
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "-"

    # --- reading ------------------------------------------------------------------
    async def _next_event(self, deadline: float, head: bytearray | None = None):
        loop = asyncio.get_running_loop()
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if head is not None and len(head) <= MAX_HEAD + 65536:
                head += data
            self.h11.receive_data(data)

    async def read_head(self):
        """The next request's head, or None when the client is done (closed,
        or idle past the limit)."""
        loop = asyncio.get_running_loop()
        head = bytearray()
        try:
            event = await self._next_event(loop.time() + self.policy.header_timeout, head)
        except TimeoutError:
            if head:
                raise _Refused(408, f"the request's head did not arrive within {self.policy.header_timeout:g} s")
            return None
        except h11.RemoteProtocolError as e:
            if "too long" in str(e) and b"\r\n" not in head[:MAX_HEAD]:
                raise _Refused(414, "request line too long") from None
            raise _Refused(e.error_status_hint, f"malformed HTTP request: {e}") from None
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise _Refused(400, "malformed HTTP request")
        if len(event.headers) > MAX_HEADERS:
            raise _Refused(431, f"more than {MAX_HEADERS} header fields")
        end = head.find(b"\r\n\r\n")
        dup = _duplicates(bytes(head[:end if end >= 0 else len(head)]))
        if dup:
            raise _Refused(400, f"duplicate framing headers refused: {dup}")
        return event

    async def read_body(self) -> bytes:
        """The whole body, by Content-Length or chunked, within max_body and body_timeout."""
        loop = asyncio.get_running_loop()
        deadline, body = loop.time() + self.policy.body_timeout, bytearray()
        try:
            while True:
                event = await self._next_event(deadline)
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self.policy.max_body:
                        raise _Refused(413, f"request body exceeds {self.policy.max_body} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    return bytes(body)
                else:
                    raise _Refused(400, "the request body ended early")
        except TimeoutError:
            raise _Refused(408, f"the request body did not arrive within {self.policy.body_timeout:g} s") from None
        except h11.RemoteProtocolError as e:
            raise _Refused(e.error_status_hint, f"malformed request body: {e}") from None

    async def drain_body(self) -> None:
        """Reads and drops what is left of a body we will not use (bounded), so
        the client, still sending, hears the answer instead of a reset."""
        loop = asyncio.get_running_loop()
        deadline, dropped = loop.time() + 5, 0
        try:
            while self.h11.their_state is h11.SEND_BODY and dropped < DRAIN_LIMIT:
                event = await self._next_event(deadline)
                if isinstance(event, h11.Data):
                    dropped += len(event.data)
                elif not isinstance(event, h11.Data):
                    break
        except (TimeoutError, h11.RemoteProtocolError, OSError):
            pass

    async def watch(self) -> None:
        """While a handler runs: notices the client closing its side; what it
        sends meanwhile (a pipelined request) is kept for h11."""
        try:
            while not self.gone.is_set():
                data = await self.reader.read(65536)
                if not data:
                    self.gone.set()
                    return
                self.h11.receive_data(data)
        except OSError:                  # reset: gone as well
            self.gone.set()
        except asyncio.CancelledError:
            pass

    # --- writing ------------------------------------------------------------------
    def _head(self, resp: Response, close: bool) -> h11.Response:
        headers = {"Content-Type": resp.content_type, **resp.headers} if resp.status != 204 else dict(resp.headers)
        if resp.stream is None and resp.status != 204:
            headers["Content-Length"] = str(len(resp.body))
        if close:
            headers["Connection"] = "close"
        origin = self.policy.cors_origin
        if origin is not None:
            headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                       "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                       "Access-Control-Allow-Headers": "Content-Type, Authorization", **headers}
        headers["Server"] = "shimmy-py"
        return h11.Response(status_code=resp.status, headers=[(k.encode(), str(v).encode()) for k, v in
                                                                headers.items()])

    async def send(self, *events) -> None:
        """`events` in one write (a stream's head and its first chunks leave together)."""
        data = b"".join(self.h11.send(event) or b"" for event in events)
        if data:
            self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.policy.body_timeout)

    async def respond(self, resp: Response, close: bool = False, head_only: bool = False) -> None:
        """A whole response (a stream goes through stream())."""
        body = [] if head_only or resp.status == 204 else [h11.Data(data=resp.body)]
        await self.send(self._head(resp, close), *body, h11.EndOfMessage())

    async def refuse(self, status: int, message: str) -> None:
        """The transport's own error, as JSON, and the connection closes."""
        resp = Response.json(status, {"error": message})
        try:
            if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self.respond(resp, close=True)
        except (OSError, h11.LocalProtocolError, TimeoutError):
            pass

    async def stream(self, resp: Response) -> None:
        """The head (with the chunks made at once), then each chunk as its
        stream thread makes it and sends it (_pump), then the end;
        ClientGone if the client left meanwhile."""
        loop, chunks, started = asyncio.get_running_loop(), resp.stream, False
        try:
            await self.send(self._head(resp, close=False), *([h11.Data(data=resp.ready)] if resp.ready else []))
            # the pump writes to the socket itself, on a descriptor of its own, so that the socket stays
            # open (and its number is not reused) until it ends; the transport is empty, and stays so
            # while it runs: whatever the socket does not take at once is written by the transport,
            # and the pump waits until the transport has sent all of it (low-water mark 0)
            fd = os.dup(self.writer.get_extra_info("socket").fileno())
            try:
                self.writer.transport.set_write_buffer_limits(0)
                pumped = loop.run_in_executor(self.server.stream_pool, self._pump, chunks, loop, fd)
            except BaseException:
                os.close(fd)
                raise
            started = True           # the pump owns the chunks and the descriptor now
            await pumped
        except BaseException:        # the client left, or the server stops: the pump ends at its next chunk
            self.gone.set()
            if not started:
                self._close_soon(chunks)
            raise
        if self.gone.is_set():
            raise ClientGone()
        await self.send(h11.EndOfMessage())

    def _pump(self, chunks: Iterator[bytes], loop: asyncio.AbstractEventLoop, fd: int) -> None:
        """On a stream thread: each chunk as the iterator makes it (it blocks
        on the model), framed and written to the socket at once: no other
        thread is woken for it while the socket has room. Meanwhile the
        event loop only feeds h11's receiving side (watch), this thread its
        sending side. Ends when the chunks do or the client is gone; the
        iterator is closed here, on the thread that ran it, then `fd`."""
        sent_all = threading.Event()
        try:
            for chunk in chunks:
                if self.gone.is_set():
                    return
                data = self.h11.send(h11.Data(data=chunk))
                try:
                    n = os.write(fd, data)
                except BlockingIOError:
                    n = 0
                except OSError:             # reset by the peer, or the pipe broke
                    self.gone.set()
                    return
                if n < len(data):           # the client reads slowly: the transport writes the rest
                    sent_all.clear()
                    loop.call_soon_threadsafe(self._write_rest, data[n:], sent_all)
                    while not sent_all.wait(0.5):
                        if self.gone.is_set():
                            return
        finally:
            try:
                _close(chunks)
            finally:
                os.close(fd)

    def _close_soon(self, chunks) -> None:
        """Closes a stream that never reached its pump, on a stream thread
        (closing it may wait on the model), or here if the server stops."""
        try:
            self.server.stream_pool.submit(_close, chunks)
        except RuntimeError:         # the pool is shut down: no thread left to wait on
            _close(chunks)

    def _write_rest(self, data: bytes, sent_all: threading.Event) -> None:
        """On the event loop: what the socket did not take, written as the
        client reads; `sent_all` once all of it is sent (a client that reads
        nothing for body_timeout is gone)."""
        if self.writer.is_closing():
            self.gone.set()
            sent_all.set()
            return
        self.writer.write(data)
        asyncio.ensure_future(self._drained(sent_all))

    async def _drained(self, sent_all: threading.Event) -> None:
        try:
            await asyncio.wait_for(self.writer.drain(), self.policy.body_timeout)
        except (OSError, TimeoutError):
            self.gone.set()
            self.writer.transport.abort()     # a close would wait for the unread bytes to leave
        finally:
            sent_all.set()

    # --- one exchange ---------------------------------------------------------------
    async def serve(self) -> None:
        """Requests one after another until the client or the protocol ends the connection."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:   # events are small writes: no Nagle delay behind the client's delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    event = await self.read_head()
                except _Refused as e:
                    await self.refuse(e.status, e.message)
                    self.server.metrics.request("other", e.status)
                    return
                if event is None or not await self.exchange(event):
                    return
                if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                    return
                self.h11.start_next_cycle()
        except (OSError, TimeoutError, ClientGone, h11.ProtocolError, asyncio.IncompleteReadError):
            pass                      # the client went away or broke the protocol: nobody to answer
        finally:
            self.writer.close()

    async def exchange(self, event: h11.Request) -> bool:
        """One request and its answer; False when the connection must close."""
        app, status = self.server.app, 0
        method, target = event.method.decode("ascii", "replace"), event.target.decode("latin-1")
        path, _, query = target.partition("?")
        req = Request(method, path, Headers(event.headers), lambda: b"", self.gone.is_set, query)
        watcher = None
        self.server.busy += 1
        try:
            early = app.check(req)
            if early is None:
                try:
                    body = await self.read_body()
                except _Refused as e:          # in the route's own error shape
                    answer = app.error(ApiError(e.status, e.message), req)
                    await self.respond(answer, close=True)
                    status = e.status
                    await self.drain_body()
                    return False
                req.read_body = lambda: body
                watcher = asyncio.ensure_future(self.watch())
                early = await self.run(req)
            status = early.status
            if early.stream is not None:
                await self.stream(early)
                return True
            pending = self.h11.their_state is h11.SEND_BODY      # answered without reading the body
            await self.respond(early, close=pending, head_only=method == "HEAD")
            if pending:
                await self.drain_body()
                return False
            return True
        finally:
            self.server.busy -= 1
            if watcher is not None:
                watcher.cancel()
            self.server.metrics.request(app.label(path), status or 499)
            # the access log: never the query string (a key sent as ?api_key= stays out) nor a header
            logger.info("%s %s %s %d", self.peer, method, path, status or 499)

    async def run(self, req: Request) -> Response:
        """The route's handler on its pool of threads, or 503 when too many wait for one."""
        server, route = self.server, self.server.app.route(req)
        lane = server.model_lane if route.model else server.control_lane
        if lane.active >= lane.capacity:
            return server.app.error(Unavailable(f"server busy: {lane.active} requests are running or waiting", 1), req)
        lane.active += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(lane.pool, server.app.run, req)
        finally:
            lane.active -= 1


