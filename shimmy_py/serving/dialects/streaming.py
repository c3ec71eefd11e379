"""Answering a generation in a dialect: parse, lease the model, submit to
its worker, then a whole JSON answer or a stream, framed as the dialect
frames it (SSE events, named or not; Ollama's NDJSON lines).

A dialect is a `shapes` object: `final(c)` (the whole answer), and for a
stream `opening()`, `piece(kind, value)`, `closing(c)` and `error(err)`,
each giving events: a str (the data) or a (name, data) pair; `framing`
"sse" or "ndjson". A non-streamed answer checks every few pieces that its
client is still there; a streamed one that the client closed cancels the
generation.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from ...errors import ShimmyError
from ...generation.loop import drain
from ..http.app import App
from ..http.exchange import ClientGone, Request, Response, as_api_error, sse
from .jobs import GenRequest

logger = logging.getLogger("shimmy_py.server")
CLIENT_CHECK_EVERY = 8          # pieces between checks that a non-streaming client is still there
_READY = object()                # _stream's mark after the first piece's events: those were made at once


@dataclass(frozen=True)
class Clock:
    """When a request began and how long it waited for its model to be resident."""
    start: float                # time.monotonic()
    load_s: float

    def total_s(self) -> float:
        return time.monotonic() - self.start


def frame(event, framing: str) -> bytes:
    if framing == "ndjson":
        return (event + "\n").encode()
    if isinstance(event, tuple):
        name, data = event
        return f"event: {name}\n".encode() + sse(data)
    return sse(event)


def answer(app: App, req: Request, gr: GenRequest, shapes: Callable) -> Response:
    """`gr` answered by its model: `shapes(model name, gr, clock)` shapes it.
    n > 1 (OpenAI's routes): n generations of the prompt, submitted together
    (the engine decodes them in the same steps; a seed given is seed + i)."""
    t0 = time.monotonic()
    lease = app.state.lease(gr.model, gr.keep_alive, gr.job.context_limit)
    clock = Clock(t0, time.monotonic() - t0)
    loaded = lease.resident.supervisor.info.get("n_ctx")
    if gr.job.context_limit and loaded and gr.job.context_limit > loaded:
        logger.info("%s: num_ctx %d asked, served in its loaded context of %d tokens", lease.name,
                    gr.job.context_limit, loaded)
    streams = []
    try:
        for i in range(gr.n):
            job, seed = gr.job, gr.job.sampling.seed
            seeded = job if seed is None or i == 0 else replace(job, sampling=replace(job.sampling,
                                                                                      seed=(seed + i) % 2**32))
            streams.append(lease.resident.supervisor.generate(seeded))   # the worker tokenizes and queues it
    except BaseException:
        for pieces in streams:
            pieces.close()
        lease.close()
        raise
    shape = shapes(lease.name, gr, clock)
    if gr.stream:
        content_type = "application/x-ndjson" if shape.framing == "ndjson" else "text/event-stream"
        chunks = _stream(app, streams, shape, lease)
        return Response.events(chunks, content_type, ready=_made_at_once(chunks))
    with lease:
        done = [drain(pieces, _client_check(req)) for pieces in streams]
        for c in done:
            app.state.metrics.completion(c)
        return Response.json(200, shape.final(done[0], done[1:]) if gr.n > 1 else shape.final(done[0]))


def _made_at_once(chunks: Iterator[bytes]) -> bytes:
    """A stream's chunks up to its first piece's, which has arrived (generate()
    waits for it): made on the handler's thread, so that the transport writes
    them with the head, without waiting on a thread again for the first token."""
    ready = []
    for chunk in chunks:
        if chunk is _READY:
            break
        ready.append(chunk)
    return b"".join(ready)


def _client_check(req: Request):
    count = 0

    def check(_piece) -> None:
        nonlocal count
        count += 1
        if count % CLIENT_CHECK_EVERY == 0 and req.client_gone():
            raise ClientGone()
    return check


def _stream(app: App, streams: list, shape, lease) -> Iterator[bytes]:
    """The events of a streamed answer (n > 1: each choice in turn). If the
    model fails meanwhile (its worker died), the stream ends with the
    dialect's error event: its status was sent. Closed early (the client
    left), it cancels the generations. After the first piece's events comes
    _READY, once (_made_at_once takes what precedes it)."""
    framing, done, marked = shape.framing, [], False
    with lease, contextlib.ExitStack() as stack:
        for pieces in streams:
            stack.enter_context(contextlib.closing(pieces))
        for i, pieces in enumerate(streams):
            if i:
                for event in shape.choice_end(done[-1]):
                    yield frame(event, framing)
                shape.next_choice()
            for event in shape.opening():       # n > 1 only on OpenAI's routes: a role chunk per choice
                yield frame(event, framing)
            while True:
                try:
                    piece = next(pieces)
                except StopIteration as end:
                    done.append(end.value)
                    break
                except ShimmyError as e:
                    err = as_api_error(e)
                    for event in shape.error(err.status, app.scrub(err.message), err.kind):
                        yield frame(event, framing)
                    return
                for event in shape.piece(*piece):
                    yield frame(event, framing)
                if not marked:
                    marked = True
                    yield _READY
            app.state.metrics.completion(done[-1])
        for event in shape.closing(done[-1], done[:-1]) if len(done) > 1 else shape.closing(done[-1]):
            yield frame(event, framing)


class SSEShapes:
    """The defaults of an SSE dialect (shimmy's, OpenAI's)."""
    framing = "sse"

    def opening(self) -> list:
        return []

    def error(self, status: int, message: str, kind: str) -> list:
        return [json.dumps({"error": {"message": message, "type": kind, "code": status}}), "[DONE]"]
