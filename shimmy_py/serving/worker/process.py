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

import sys
import threading
from multiprocessing.connection import Connection
from typing import Callable

import numpy as np

from ...errors import GenerationError, ShimmyError
from ...generation.chatting import ChatOptions, prepare, structured
from ...generation.engine import Engine, EngineFailed, QueueFull
from ...generation.experts import ExpertTrace
from ...generation.job import Job
from ...generation.loop import drain, relay, run
from . import messages as m
from .figures import read_all
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

    CALLS: dict[type, Callable]      # a Call's type -> the method that answers it (self, message) -> value

    def __init__(self, conn, model, queue_limit: int, cache_bytes: int = 0):
        self.conn, self.model = conn, model
        self.engine = Engine(model.context, model.vocab, queue_limit=queue_limit, cache_bytes=cache_bytes,
                             n_experts=model.header.arch_key("expert_count", 0), drafter=model.drafter(),
                             set_threads=model.set_threads)
        self.engine.stats.stream = model.streamer.stats if model.streamer is not None else None
        self._send_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._threads: dict[int, threading.Thread] = {}
        self.HANDLERS = {m.Generate: self._start, m.Cancel: lambda msg: self._cancelled.add(msg.rid),
                         m.CacheLimit: lambda msg: self.engine.limit_cache(msg.bytes),
                         m.Threads: lambda msg: self.engine.share_threads(msg.n)}
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
        """The heartbeat's figures (figures.py), with the expert counts when traced."""
        experts = {"experts": {layer: c.tolist() for layer, c in self.engine.expert_counts.items()}} \
            if self.engine.routing is not None else {}
        return {**read_all(self.engine.stats, self.engine.cache), **experts}

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

    def readable_logprobs(self, c) -> list[dict]:
        """Each token's logprob with its text and bytes, and the alternatives',
        in OpenAI's chat form ({"token", "logprob", "bytes", "top_logprobs"})."""
        vocab = self.model.vocab

        def entry(tok: int, lp: float) -> dict:
            raw = vocab.token_bytes(tok, True)
            return {"token": raw.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(raw)}
        return [{**entry(tok, lp), "top_logprobs": [entry(t, x) for t, x in top]}
                for tok, (lp, top) in zip(c.tokens, c.logprobs)]

    # --- calls ------------------------------------------------------------------------
    def tokenize(self, msg: m.Tokenize):
        """llama-server's /tokenize: ids, or (id, piece) pairs (a piece that is
        not whole UTF-8 as its bytes)."""
        ids = self.model.tokenize(msg.text, add_special=msg.add_special, parse_special=msg.parse_special)
        if not msg.with_pieces:
            return ids
        out = []
        for i in ids:
            raw = self.model.vocab.token_bytes(i, True)
            try:
                out.append((i, raw.decode("utf-8")))
            except UnicodeDecodeError:
                out.append((i, list(raw)))
        return out

    def detokenize(self, msg: m.Detokenize) -> str:
        self.model.vocab.check_ids(msg.tokens)
        return self.model.detokenize(list(msg.tokens))

    def render_chat(self, msg: m.RenderChat) -> dict:
        req = msg.job
        turn = prepare(self.model.vocab, req.messages, req.chat or ChatOptions(), req.sampling)
        return {"prompt": turn.prompt, "tokens": len(self.model.tokenize(turn.prompt, parse_special=True))}

    def embed(self, msg: m.Embed) -> dict:
        """Each input's pooled embedding (a float32 array) and the tokens they took."""
        model, rows, n = self.model, [], 0
        for item in msg.inputs:
            tokens = model.tokenize(item, parse_special=True) if isinstance(item, str) else list(item)
            model.vocab.check_ids(tokens)
            n += len(tokens)
            rows.append(model.embedder().embed(tokens, msg.normalize))
        return {"embeddings": rows, "tokens": n}

    CALLS = {m.Tokenize: tokenize, m.Detokenize: detokenize, m.RenderChat: render_chat, m.Embed: embed}

    # --- generations ------------------------------------------------------------------
    def _start(self, msg: m.Generate) -> None:
        self._spawn(msg.rid, self._generate, msg)

    def _generate(self, msg: m.Generate) -> None:
        rid = msg.rid
        gen, source = self._open(msg.job)

        def forward(delta) -> None:
            if rid in self._cancelled:
                raise _Cancelled()
            kind, value = delta
            self.send(m.Piece(rid, "", kind, value) if kind == "tool_call" else m.Piece(rid, value, kind))
        completion = drain(gen, forward)
        if completion.logprobs is not None:
            completion.logprobs = self.readable_logprobs(completion)
        if source.experts is not None:
            completion.experts = self.routed(source, completion)
        done = m.Done(rid, completion)
        self.send(m.Heartbeat(self.stats()))    # the counters include this request when its answer arrives
        self.send(done)

    def _open(self, req: Job):
        """The request's generation as (kind, value) deltas: tokenized,
        submitted, wrapped in the loop (a chat: in its parser too)."""
        model = self.model
        if req.messages is not None:
            turn = prepare(model.vocab, req.messages, req.chat or ChatOptions(), req.sampling)
            tokens = model.tokenize(turn.prompt, parse_special=True)
            max_tokens = _budget(req, len(tokens), model.n_ctx)
            source = self.engine.submit(tokens, turn.sampling, max_tokens, req.logprobs, req.experts)
            pieces = run(source, model.vocab, max_tokens, req.stop, model.vocab.special_ids(turn.special))
            return structured(pieces, turn.parser), source
        tokens = model.tokenize(req.prompt)
        max_tokens = _budget(req, len(tokens), model.n_ctx)
        source = self.engine.submit(tokens, req.sampling, max_tokens, req.logprobs, req.experts)
        return as_content(run(source, model.vocab, max_tokens, req.stop)), source

    def routed(self, source, c) -> ExpertTrace:
        """A traced request's routing: every token fed through the model (the
        prompt, then each generated one but the last, which never was)."""
        rows = source.experts
        tokens = [*source.tokens, *c.tokens][:len(rows)]
        return ExpertTrace(ids=np.stack([r[0] for r in rows]), weights=np.stack([r[1] for r in rows]),
                           layers=tuple(sorted(self.engine.expert_counts)), n_experts=self.engine.n_experts,
                           tokens=tokens, n_prompt=len(source.tokens))


def _budget(req: Job, n_prompt: int, n_ctx: int) -> int:
    """The tokens the answer may take: max_tokens (None: the rest of the
    context), within Ollama's num_ctx where the request sets one. A num_ctx
    above the loaded context is served in the loaded one, as Ollama caps it
    at what the model holds (the server logs it); only a prompt that cannot
    fit is refused, naming the numbers."""
    max_tokens = req.max_tokens if req.max_tokens is not None else n_ctx
    if req.context_limit is None:
        return max_tokens
    limit = min(req.context_limit, n_ctx)
    if n_prompt >= limit:
        held = f" (the model is loaded with a context of {n_ctx} tokens)" if req.context_limit > n_ctx else ""
        raise GenerationError(f"the prompt ({n_prompt} tokens) does not fit num_ctx {req.context_limit}{held}")
    return min(max_tokens, limit - n_prompt)


def as_content(pieces):
    """Text pieces as ("content", text) deltas; returns their Completion."""
    return relay(pieces, lambda piece: (("content", piece),))


def main(conn, spec) -> None:
    """The worker process: load, say ready (or why not), serve."""
    from ...generation.model import Model
    try:
        model = Model(spec.model_path, spec.options)
    except ShimmyError as e:
        conn.send(m.LoadFailed(str(e)))
        return
    plan = model.plan
    conn.send(m.Ready({"n_ctx": model.n_ctx, "devices": plan.weights_by_device() if plan else {},
                       "kv": {d.name: d.kv_bytes for d in plan.devices if d.kv_bytes} if plan else {},
                       "tiers": tiers_info(plan.tiers) if plan and plan.tiers else None,
                       "predicted": prediction(model)}))
    Worker(conn, model, spec.queue_limit, spec.cache_bytes).serve()


def prediction(model) -> dict | None:
    """The cost model's decode and prefill speed for the plan (placement/predict.py), with a machine profile."""
    from ...placement.predict import predicted
    p = predicted(model.plan, model.header, model.n_threads) if model.plan is not None else None
    return {"decode_tps": round(p.decode_tps, 3), "prefill_tps": round(p.prefill_tps, 2),
            "host_only": p.host_only} if p else None


def tiers_info(tiers) -> dict:
    """What the plan streams, for /api/ps: resident and streamed bytes, and the reads it expects."""
    return {"budget_bytes": tiers.budget_bytes, "resident_bytes": tiers.resident_bytes,
            "streamed_bytes": tiers.streamed_bytes, "expected_file_bytes_per_token": round(tiers.file_bytes_per_token),
            "expected_miss_rate": round(tiers.miss_rate, 4)}


def _entry() -> None:
    """`python -m shimmy_py.serving.worker FD` (__main__.py): the spec, then main()."""
    conn = Connection(int(sys.argv[1]))
    main(conn, conn.recv())

