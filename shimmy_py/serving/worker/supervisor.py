"""The server's side of the model worker (process.py): starts it, relays each
request's pieces back to its handler, and when the worker dies (a native
crash: SIGSEGV, SIGABRT, or a kill) fails the requests in flight with a
message naming the signal, counts the restart, and starts it again.

`generate()` gives a handler the same thing generation.loop.run() gives the
Python API: a generator of text pieces that returns the Completion; closing
it early cancels the request in the worker. `call()` sends any `Call`
message (messages.py) and returns the worker's answer. Failures are domain
errors: Unavailable (busy, loading, restarting, died), GenerationError (the
request), ShimmyError (inside the worker); the HTTP layer maps them.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Generator

from ...errors import GenerationError, ShimmyError, Unavailable
from ...generation.job import Job
from ...generation.loop import Completion
from ...generation.options import ModelOptions
from . import messages as m
from .figures import COUNTERS
from .watchdog import Liveness, stalled

logger = logging.getLogger("shimmy_py.server")
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _spawn(spec) -> tuple:
    """A fresh interpreter running `python -m shimmy_py.serving.worker` (no
    threads or native state inherited, and never the user's own script
    re-imported, as multiprocessing's spawn would), joined by a socket pair."""
    ours, theirs = socket.socketpair()
    env = dict(os.environ)       # this very package importable, installed or only on sys.path
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "shimmy_py.serving.worker", str(theirs.fileno())],
                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
    theirs.close()
    conn = Connection(ours.detach())
    conn.send(spec)
    return conn, proc


def _wait(proc, timeout: float | None) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


class WorkerDied(Unavailable):
    """The model worker process ended while requests were in flight."""


@dataclass(frozen=True)
class WorkerSpec:
    """How to start the worker: the model, the options it loads with, the engine's queue."""
    model_path: str
    options: ModelOptions
    queue_limit: int
    cache_bytes: int = 0             # host RAM for conversations whose slot went to another request
    watchdog_s: float = 0.0          # a worker with requests in flight and no progress this long is stalled; 0: off


class WorkerError(ShimmyError):
    """Something failed inside the model worker (its message says what)."""


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Runs the worker; restarts it after a crash, until stopped."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.last_crash: str | None = None
        self.restarts = 0
        self.info: dict = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()    # handler threads send at once; a pickled prompt can take many writes
        self._requests: dict[int, queue.SimpleQueue] = {}
        self.stats: dict | None = None        # the engine's counters, from the last heartbeat
        self._carried = dict.fromkeys(COUNTERS, 0)   # counters of the worker processes before this one
        self.live = Liveness()
        self.stalled: str | None = None       # why the watchdog counts the worker stalled
        self.stalls = 0
        self._stalled_at = 0.0
        self._ids = itertools.count()
        self._stopping = False
        self._restarting = False
        self._conn = self._proc = None
        self._watchdog = None
        self.threads: int | None = None       # the pool's share of the cores; None: the worker's own count

    # --- lifetime -----------------------------------------------------------------
    def start(self) -> None:
        """Starts the worker and waits until it is ready or failed to load."""
        ours, proc = _spawn(self.spec)
        with self._lock:
            self._conn, self._proc = ours, proc
        first = self._recv_from(ours)
        if not isinstance(first, m.Ready):
            _wait(proc, 10)
            self.load_error = first.message if isinstance(first, m.LoadFailed) else \
                f"the model worker {describe_exit(proc.returncode)} while loading"
            raise ShimmyError(self.load_error)
        self.info, self.load_error = first.info, None
        now = time.monotonic()
        self.live, self.stalled = Liveness(now, now), None
        if self.stats:                       # a restart: the last process's counts stay counted
            self._carried = self.counters()
            self.stats = None
        if self.threads is not None:         # a restart: the share the pool gave its predecessor
            with contextlib.suppress(OSError):
                self._send(m.Threads(self.threads))
        self.ready.set()
        threading.Thread(target=self._read, args=(ours, proc), name="shimmy-worker-reader", daemon=True).start()
        if self.spec.watchdog_s and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="shimmy-watchdog", daemon=True)
            self._watchdog.start()

    def counters(self) -> dict:
        """The engine's counters over every process this supervisor ran."""
        last = self.stats or {}
        return {k: self._carried[k] + last.get(k, 0) for k in COUNTERS}

    @property
    def healthy(self) -> bool:
        """Loaded, answering and making progress."""
        return self.ready.is_set() and self.stalled is None

    def _watch(self) -> None:
        """Every half second: stalled (watchdog.py)? Then the requests in flight
        fail naming why, and a worker stalled as long again is killed (and so
        restarted)."""
        limit = self.spec.watchdog_s
        while not self._stopping:
            time.sleep(0.5)
            now = time.monotonic()
            if not self.ready.is_set():
                continue
            if self.stalled is not None:
                if self.live.progress_at > self._stalled_at:
                    logger.warning("the model worker makes progress again")
                    self.stalled = None
                elif now - self._stalled_at > limit and self._proc is not None:
                    logger.error("killing the model worker: %s", self.stalled)
                    self._killed_for = self.stalled
                    self._proc.kill()
                continue
            reason = stalled(self.live, now, len(self._requests), limit)
            if reason is not None:
                self.stalled, self._stalled_at = reason, now
                self.stalls += 1
                logger.error("%s; failing the requests in flight", reason)
                self._fail_all(reason)

    def stop(self, timeout: float = 60.0) -> None:
        """Asks the worker to end its streams and exit; waits for it."""
        self._stopping = True
        with self._lock:
            conn, proc = self._conn, self._proc
        if conn is None:
            return
        try:
            conn.send(m.Stop())
        except OSError:
            pass
        _wait(proc, timeout)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _read(self, conn, proc) -> None:
        """Relays the worker's messages; on its death fails what was in flight."""
        while (msg := self._recv_from(conn)) is not None:
            if isinstance(msg, m.Heartbeat):
                self.stats = msg.values
                self.live.heartbeat(time.monotonic(), msg.values)
                continue
            self.live.reply(time.monotonic())
            with self._lock:
                q = self._requests.get(getattr(msg, "rid", None))
            if q is not None:
                q.put(msg)
        _wait(proc, 10)
        if self._stopping:
            self._fail_all("the server is shutting down")
            return
        killed_for, self._killed_for = getattr(self, "_killed_for", None), None
        self.last_crash = f"the model worker {describe_exit(proc.returncode)}" if killed_for is None else \
            f"the model worker was killed: {killed_for}"
        logger.error("%s; failing %d requests in flight and restarting it", self.last_crash, len(self._requests))
        self.ready.clear()
        self._fail_all(f"{self.last_crash}; it is being restarted, retry shortly")
        self.restarts += 1
        threading.Thread(target=self._restart, name="shimmy-worker-restart", daemon=True).start()

    @staticmethod
    def _recv_from(conn):
        try:
            return conn.recv()
        except (EOFError, OSError):
            return None

    def _fail_all(self, message: str) -> None:
        with self._lock:
            pending = list(self._requests.items())
        for rid, q in pending:
            q.put(WorkerDied(message, 5))

    def _restart(self) -> None:
        with self._lock:
            if self._restarting:
                return
            self._restarting = True
        try:
            self.start()
        except ShimmyError as e:
            logger.error("the model worker could not be restarted: %s (the next request tries again)", e)
        finally:
            self._restarting = False

    # --- requests -------------------------------------------------------------------
    def _send(self, msg) -> None:
        """One message to the worker, whole: Connection.send is not safe from several threads."""
        with self._send_lock:
            self._conn.send(msg)

    def limit_cache(self, limit_bytes: int) -> None:
        """Bounds the worker's host-RAM conversation cache (a restart keeps the bound)."""
        self.spec = replace(self.spec, cache_bytes=limit_bytes)
        if self.ready.is_set():
            try:
                self._send(m.CacheLimit(limit_bytes))
            except OSError:
                pass                          # the worker is gone; its restart starts with the bound

    def share_threads(self, n: int) -> None:
        """The CPU threads the worker computes with from its next step (the
        pool's share of the cores, threads.py); a restarted worker is told again."""
        self.threads = n
        if self._conn is not None:            # a worker still loading reads it once ready
            try:
                self._send(m.Threads(n))
            except OSError:
                pass                          # the worker is gone; start() tells its successor

    def _submit(self, msg):
        """Sends `msg` (Generate or a Call) with a request id of its own; returns
        (rid, the queue its replies arrive on). A worker whose restart failed
        (say, an RPC server was down) is tried again by the next request."""
        if not self.ready.is_set() and self.restarts and not self._restarting and not self._stopping:
            self._restart()
        if not self.ready.is_set():
            raise Unavailable(self.load_error or self.last_crash or "the model is loading", 5)
        if self.stalled is not None:
            raise Unavailable(self.stalled, 5)
        rid, q = next(self._ids), queue.SimpleQueue()
        with self._lock:
            self._requests[rid] = q
        try:
            self._send(replace(msg, rid=rid))
        except OSError:
            self._forget(rid)
            raise Unavailable("the model worker is restarting, retry shortly", 5) from None
        return rid, q

    def call(self, msg: m.Call):
        """The worker's answer to `msg` (a Call: tokenize, embed, ...)."""
        rid, q = self._submit(msg)
        try:
            reply = q.get()
        finally:
            self._forget(rid)
        if isinstance(reply, m.Result):
            return reply.value
        raise self._error(reply)

    def generate(self, req: Job) -> Generator[tuple, None, Completion]:
        """Submits `req` now (errors raise here) and returns its deltas:
        ("content" | "reasoning", text), ("tool_call", ToolCall)."""
        rid, q = self._submit(m.Generate(req))
        first = q.get()
        if not isinstance(first, (m.Piece, m.Done)):
            self._forget(rid)
            raise self._error(first)
        return self._pieces(rid, q, first)

    def _pieces(self, rid: int, q, first) -> Generator[tuple, None, Completion]:
        msg, finished = first, False
        try:
            while True:
                if isinstance(msg, m.Piece):
                    yield (msg.kind, msg.call if msg.kind == "tool_call" else msg.text)
                elif isinstance(msg, m.Done):
                    finished = True
                    return msg.completion
                else:
                    finished = True
                    raise self._error(msg)
                msg = q.get()
        finally:
            if not finished:                      # closed early: the client went away
                try:
                    self._send(m.Cancel(rid))
                except OSError:
                    pass
            self._forget(rid)

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._requests.pop(rid, None)

    @staticmethod
    def _error(msg) -> ShimmyError:
        """The domain error of a failure reply (or of the worker's death)."""
        if isinstance(msg, BaseException):
            return msg
        if msg.kind == m.BUSY:
            return Unavailable(f"server busy: {msg.message}", 1)
        if msg.kind == m.UNAVAILABLE:
            return Unavailable(msg.message)
        if msg.kind == m.INVALID:
            return GenerationError(msg.message)
        return WorkerError(msg.message)
