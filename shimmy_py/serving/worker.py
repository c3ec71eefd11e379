"""The model worker: a child process that holds the model and its batching
engine, so that whatever llama.cpp still aborts on (it asserts where Python
cannot catch) ends this process, never the HTTP server (supervisor.py
restarts it).

Started as `python -m shimmy_py.serving.worker FD` (supervisor.py), it
speaks to the server over one Connection on that socket in the typed
messages of messages.py; the first message is its WorkerSpec. Messages are
dispatched by type (`Worker.HANDLERS`); a `Call` is answered by the method
CALLS names for its type, on a thread of its own. Each generation runs on a
thread of its own that tokenizes, submits to the engine and drains the
generation loop; a Cancel (the client went away) closes its generation at
the next piece, which frees its sequence.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from multiprocessing.connection import Connection
from typing import Callable

from ..errors import GenerationError, ShimmyError
from ..generation.chatting import ChatOptions, prepare, structured
from ..generation.loop import drain, run
from . import messages as m
from .api import GenRequest
from .engine import Engine, EngineFailed, QueueFull
from .watchdog import HEARTBEAT_S


class _Cancelled(Exception):
    """The server asked to stop this request (its client went away)."""


def failure(rid: int, e: BaseException) -> m.Failed:
    """The reply for a request that raised `e`."""
    kind = m.BUSY if isinstance(e, QueueFull) else m.UNAVAILABLE if isinstance(e, EngineFailed) else \
        m.INVALID if isinstance(e, GenerationError) else m.INTERNAL
    return m.Failed(rid, kind, str(e))


class Worker:
    """The worker process's state: the model, the engine, the requests in flight."""

    # a Call's type -> the method that answers it (self, message) -> value
    CALLS: dict[type, Callable] = {}

    def __init__(self, conn, model, queue_limit: int, cache_bytes: int = 0):
        self.conn, self.model = conn, model
        self.engine = Engine(model.context, model.vocab, queue_limit=queue_limit, cache_bytes=cache_bytes)
        self._send_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._threads: dict[int, threading.Thread] = {}
        self.HANDLERS = {m.Generate: self._start, m.Cancel: lambda msg: self._cancelled.add(msg.rid),
                         m.CacheLimit: lambda msg: self.engine.limit_cache(msg.bytes)}
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, name="shimmy-heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        """The engine's counters every HEARTBEAT_S: the server's metrics read
        them, and its watchdog sees this process alive and its engine advance."""
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.send(m.Heartbeat(self.stats()))
            except OSError:
                return

    def send(self, msg) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def serve(self) -> None:
        """Answers the server's messages until it says stop or goes away."""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):       # the server is gone: nothing to serve
                break
            if isinstance(msg, m.Stop):
                break
            handler = self.HANDLERS.get(type(msg))
            if handler is not None:
                handler(msg)
            elif isinstance(msg, m.Call):
                self._spawn(msg.rid, self._call, msg)
        self._stop.set()
        self.engine.close()                   # open streams end ("cancelled")
        for t in list(self._threads.values()):
            t.join(timeout=30)
        self.model.close()

    def stats(self) -> dict:
        s, c = self.engine.stats, self.engine.cache
        return {"queue_depth": s.queue_depth, "active": s.active, "steps": s.steps,
                "batch_tokens": s.batch_tokens, "step_s": s.step_s, "decode_s": s.decode_s,
                "cache_ram_bytes": c.bytes, "cache_ram_hits": c.hits, "cache_ram_saves": c.saves}

    def _spawn(self, rid: int, target, msg) -> None:
        t = threading.Thread(target=self._run, args=(rid, target, msg), name=f"shimmy-request-{rid}", daemon=True)
        self._threads[rid] = t
        t.start()

    def _run(self, rid: int, target, msg) -> None:
        try:
            target(msg)
        except _Cancelled:
            self.send(m.Done(rid, None))
        except ShimmyError as e:
            self.send(failure(rid, e))
        except Exception as e:   # a bug must still answer the request, not leave it waiting
            import traceback
            traceback.print_exc()
            self.send(m.Failed(rid, m.INTERNAL, f"{type(e).__name__}: {e}"))
        finally:
            self._cancelled.discard(rid)
            self._threads.pop(rid, None)

    def _call(self, msg: m.Call) -> None:
        method = self.CALLS.get(type(msg))
        if method is None:
            raise ShimmyError(f"this worker does not answer {type(msg).__name__}")
        self.send(m.Result(msg.rid, method(self, msg)))

    # --- generations ------------------------------------------------------------------
    def _start(self, msg: m.Generate) -> None:
        self._spawn(msg.rid, self._generate, msg)

    def _generate(self, msg: m.Generate) -> None:
        rid = msg.rid
        gen = self._open(msg.request)

        def forward(delta) -> None:
            if rid in self._cancelled:
                raise _Cancelled()
            kind, value = delta
            self.send(m.Piece(rid, "", kind, value) if kind == "tool_call" else m.Piece(rid, value, kind))
        done = m.Done(rid, drain(gen, forward))
        self.send(m.Heartbeat(self.stats()))    # the counters include this request when its answer arrives
        self.send(done)

    def _open(self, req: GenRequest):
        """The request's generation as (kind, value) deltas: tokenized,
        submitted, wrapped in the loop (a chat: in its parser too)."""
        model = self.model
        max_tokens = req.max_tokens if req.max_tokens is not None else model.n_ctx
        if req.messages is not None:
            turn = prepare(model.vocab, req.messages, req.chat or ChatOptions(), req.sampling)
            tokens = model.tokenize(turn.prompt, parse_special=True)
            source = self.engine.submit(tokens, turn.sampling, max_tokens)
            pieces = run(source, model.vocab, max_tokens, req.stop, model.vocab.special_ids(turn.special))
            return structured(pieces, turn.parser)
        source = self.engine.submit(model.tokenize(req.prompt), req.sampling, max_tokens)
        return as_content(run(source, model.vocab, max_tokens, req.stop))


def as_content(pieces):
    """Text pieces as ("content", text) deltas; returns their Completion."""
    with contextlib.closing(pieces):
        while True:
            try:
                piece = next(pieces)
            except StopIteration as done:
                return done.value
            yield ("content", piece)


def main(conn, spec) -> None:
    """The worker process: load, say ready (or why not), serve."""
    from ..generation.model import Model
    try:
        model = Model(spec.model_path, spec.options)
    except ShimmyError as e:
        conn.send(m.LoadFailed(str(e)))
        return
    plan = model.plan
    conn.send(m.Ready({"n_ctx": model.n_ctx, "devices": plan.weights_by_device() if plan else {}}))
    Worker(conn, model, spec.queue_limit, spec.cache_bytes).serve()


def _entry() -> None:
    """`python -m shimmy_py.serving.worker FD`: the spec, then main()."""
    conn = Connection(int(sys.argv[1]))
    main(conn, conn.recv())


if __name__ == "__main__":
    _entry()
