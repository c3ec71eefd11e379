"""The HTTP transport: one asyncio event loop holds every connection, so an
idle or slow client costs a coroutine and a socket, never a thread (h11
parses the bytes: connection.py). The route handlers run on bounded pools
of threads: model routes on `model_threads` (beyond those, `max_pending`
requests wait, then 503 at once), the others on threads of their own, so
that /health answers whatever the models do; a stream's chunks are made
on a stream thread, which writes them to the socket itself (the loop
writes only what a slow client's socket does not take). Binding happens at
construction (IPv4 or IPv6, "::" for both), so a busy port is an error there.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from .connection import MAX_HEAD, Connection
from .policy import HttpPolicy

logger = logging.getLogger("shimmy_py.server")
BACKLOG = 512                   # listen backlog: bursts wait in the kernel, not in SYN retransmits


class _Lane:
    """Handler threads for one kind of route, and how many requests may wait for one."""

    def __init__(self, threads: int, max_pending: int, name: str):
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self.capacity, self.active = threads + max_pending, 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, IPv4 or IPv6 ("::" takes both where the system allows)."""
    family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def raise_open_files_limit() -> None:
    """Idle connections cost a file descriptor each: take the hard limit."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ImportError, ValueError, OSError):
        pass


class HttpServer:
    """The listening socket, the event loop (serve_forever runs it) and the
    handler threads. Binding happens at construction, so a busy port is an
    error there."""
    request_queue_size = BACKLOG

    def __init__(self, app, metrics, policy: HttpPolicy, address: tuple[str, int], model_threads: int,
                 control_threads: int, max_pending: int, stream_threads: int, max_connections: int = 10000):
        self.app, self.metrics, self.policy = app, metrics, policy
        self.socket = _bind(*address)
        self.server_address = self.socket.getsockname()
        self.model_lane = _Lane(model_threads, max_pending, "shimmy-model")
        self.control_lane = _Lane(control_threads, max_pending, "shimmy-http")
        # a streamed answer's chunks are made on a thread of their own from its first piece to its end
        # (Connection._pump): as many as the engines hold generations, so a stream never waits for one
        self.stream_pool = ThreadPoolExecutor(stream_threads, thread_name_prefix="shimmy-stream")
        self.max_connections = max_connections
        self._connections: set[asyncio.Task] = set()
        self.busy = 0                   # exchanges in progress (the loop's own count: no lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._started, self._done = threading.Event(), threading.Event()
        raise_open_files_limit()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_connections:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                         b"Connection: close\r\nContent-Length: 47\r\n\r\n"
                         + json.dumps({"error": "server busy: too many connections"}).encode()[:47])
            writer.close()
            return
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await Connection(self, reader, writer).serve()
        except asyncio.CancelledError:
            pass                        # the server is stopping: the connection closed itself
        except Exception:
            logger.exception("error on a connection")
        finally:
            self._connections.discard(task)

    def serve_forever(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._client, sock=self.socket, limit=MAX_HEAD))
            self._started.set()
            loop.run_forever()
        finally:
            self._started.set()
            # idle keep-alive connections: cancelled, and their tasks run to their end (each
            # closes its socket) before the loop closes; a task left pending there logs errors
            tasks = [t for t in self._connections if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._done.set()

    def shutdown(self, grace_s: float = 30.0) -> None:
        """Stops accepting, lets the exchanges in progress finish (up to
        `grace_s`), then stops the loop and closes the idle connections."""
        if not self._started.wait(10) or self._loop is None or self._loop.is_closed():
            return

        async def stop():
            self._server.close()
            deadline = self._loop.time() + grace_s
            while self.busy and self._loop.time() < deadline:
                await asyncio.sleep(0.05)
            self._loop.stop()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop)
        except RuntimeError:
            return
        self._done.wait(grace_s + 10)

    def server_close(self) -> None:
        self.socket.close()
        for pool in (self.model_lane.pool, self.control_lane.pool, self.stream_pool):
            pool.shutdown(wait=False, cancel_futures=True)
