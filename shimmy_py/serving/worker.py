"""The model worker: a child process that holds the model and its batching
engine, so that whatever llama.cpp still aborts on (it asserts where Python
cannot catch) ends this process, never the HTTP server (supervisor.py
restarts it).

Started as `python -m shimmy_py.serving.worker FD` (supervisor.py), it
speaks to the server over one Connection on that socket, in tuples; the
first message is its WorkerSpec:
  server -> worker   ("generate", rid, GenRequest), ("cancel", rid), ("stats",),
                     ("cache_limit", bytes), ("stop",)
  worker -> server   ("ready", info) or ("load_error", message) once, then
                     ("piece", rid, text), ("done", rid, Completion),
                     ("error", rid, kind, message), ("stats", dict)
Each request runs on a thread of its own that tokenizes, submits to the
engine and drains the generation loop; a cancel (the client went away)
closes its generation at the next piece, which frees its sequence.
"""
from __future__ import annotations

import sys
import threading
from multiprocessing.connection import Connection

from ..errors import GenerationError, ShimmyError
from ..generation.loop import drain, run
from .api import GenRequest
from .engine import Engine, EngineFailed, QueueFull


class _Cancelled(Exception):
    """The server asked to stop this request (its client went away)."""


class Worker:
    """The worker process's state: the model, the engine, the requests in flight."""

    def __init__(self, conn, model, queue_limit: int, cache_bytes: int = 0):
        self.conn, self.model = conn, model
        self.engine = Engine(model.context, model.vocab, queue_limit=queue_limit, cache_bytes=cache_bytes)
        self._send_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._threads: dict[int, threading.Thread] = {}

    def send(self, *msg) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def serve(self) -> None:
        """Answers the server's messages until it says stop or goes away."""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):       # the server is gone: nothing to serve
                break
            kind = msg[0]
            if kind == "generate":
                self._start(msg[1], msg[2])
            elif kind == "cancel":
                self._cancelled.add(msg[1])
            elif kind == "stats":
                self.send("stats", self.stats())
            elif kind == "cache_limit":
                self.engine.limit_cache(msg[1])
            elif kind == "stop":
                break
        self.engine.close()                   # open streams end ("cancelled")
        for t in list(self._threads.values()):
            t.join(timeout=30)
        self.model.close()

    def stats(self) -> dict:
        s, c = self.engine.stats, self.engine.cache
        return {"queue_depth": s.queue_depth, "active": s.active, "steps": s.steps,
                "batch_tokens": s.batch_tokens, "step_s": s.step_s, "decode_s": s.decode_s,
                "cache_ram_bytes": c.bytes, "cache_ram_hits": c.hits, "cache_ram_saves": c.saves}

    def _start(self, rid: int, req: GenRequest) -> None:
        t = threading.Thread(target=self._generate, args=(rid, req), name=f"shimmy-request-{rid}", daemon=True)
        self._threads[rid] = t
        t.start()

    def _generate(self, rid: int, req: GenRequest) -> None:
        try:
            gen = self._open(req)

            def forward(piece: str) -> None:
                if rid in self._cancelled:
                    raise _Cancelled()
                self.send("piece", rid, piece)
            self.send("done", rid, drain(gen, forward))
        except _Cancelled:
            self.send("done", rid, None)
        except QueueFull as e:
            self.send("error", rid, "busy", str(e))
        except EngineFailed as e:
            self.send("error", rid, "unavailable", str(e))
        except GenerationError as e:
            self.send("error", rid, "invalid", str(e))
        except ShimmyError as e:
            self.send("error", rid, "internal", str(e))
        finally:
            self._cancelled.discard(rid)
            self._threads.pop(rid, None)

    def _open(self, req: GenRequest):
        """The request's generation: tokenized, submitted, wrapped in the loop."""
        model = self.model
        if req.messages is not None:
            tokens = model.tokenize(model.apply_chat_template(req.messages, template_kwargs=req.template_kwargs),
                                    parse_special=True)
        else:
            tokens = model.tokenize(req.prompt)
        max_tokens = req.max_tokens if req.max_tokens is not None else model.n_ctx
        source = self.engine.submit(tokens, req.sampling, max_tokens)
        return run(source, model.vocab, max_tokens, req.stop)


def main(conn, model_path: str, n_ctx: int, n_seq_max: int, threads, queue_limit: int, model_kwargs: dict,
         cache_bytes: int = 0) -> None:
    """The worker process: load, say ready (or why not), serve."""
    from ..generation.model import Model
    try:
        model = Model(model_path, n_ctx=n_ctx, n_seq_max=n_seq_max, n_threads=threads, **model_kwargs)
    except ShimmyError as e:
        conn.send(("load_error", str(e)))
        return
    plan = model.plan
    conn.send(("ready", {"n_ctx": model.n_ctx, "devices": plan.weights_by_device() if plan else {}}))
    Worker(conn, model, queue_limit, cache_bytes).serve()


def _entry() -> None:
    """`python -m shimmy_py.serving.worker FD`: the spec, then main()."""
    conn = Connection(int(sys.argv[1]))
    s = conn.recv()
    main(conn, s.model_path, s.n_ctx, s.n_seq_max, s.threads, s.queue_limit, s.model_kwargs, s.cache_bytes)


if __name__ == "__main__":
    _entry()
