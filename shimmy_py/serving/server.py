"""`shimmy-py serve`: shimmy's HTTP API and OpenAI's on one resident model.

Built on the standard library's ThreadingHTTPServer: one thread per
connection, while the batching engine (engine.py) decodes every request's
sequence in shared llama_decode calls. Handlers dispatch in do_GET/do_POST,
answer through two helpers (JSON with Content-Length; SSE flushed per event)
and consume generate.run() generators; a client that goes away closes its
generator, which frees its sequence.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .. import defaults
from ..errors import GenerationError, ShimmyError
from ..generation.loop import drain, run
from .api import (
    ApiError,
    GenRequest,
    OpenAIShapes,
    generate_response,
    openai_error,
    parse_request,
    timing,
)
from .engine import Engine, EngineFailed, QueueFull
from .metrics import Metrics
from .names import name_table

logger = logging.getLogger("shimmy_py.server")
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization"}


@dataclass
class ServeConfig:
    """What `serve` runs with; each default's reason is in defaults.py."""
    model_path: Path
    host: str = defaults.HOST
    port: int = defaults.PORT
    ctx: int = defaults.N_CTX          # context of each request (the KV cache holds ctx x parallel)
    threads: int | None = None         # None: defaults.threads()
    parallel: int = defaults.PARALLEL
    queue: int = defaults.QUEUE
    api_key: str | None = None
    max_body: int = defaults.MAX_BODY
    model_kwargs: dict = field(default_factory=dict)  # placement options for Model
    known_paths: tuple = ()        # other discovered files, listed by /api/models


class State:
    """What the handlers share: the model once loaded, its engine, its names."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.model = self.engine = None
        self.load_error: str | None = None
        self.ready = threading.Event()
        self.metrics = Metrics()
        names = name_table([config.model_path])
        self.names = sorted(names, key=len, reverse=True)
        self.name = self.names[0]
        self.all_names = name_table([config.model_path, *config.known_paths])
        self.inflight = 0
        self.idle = threading.Condition()

    def enter(self) -> None:
        with self.idle:
            self.inflight += 1

    def leave(self) -> None:
        with self.idle:
            self.inflight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.inflight == 0, timeout)

    def load(self) -> None:
        from ..generation.model import Model
        c = self.config
        try:
            self.model = Model(c.model_path, n_ctx=c.ctx * c.parallel, n_seq_max=c.parallel,
                               n_threads=c.threads, **c.model_kwargs)
            self.engine = Engine(self.model.context, self.model.vocab, queue_limit=c.queue)
            self.ready.set()
        except ShimmyError as e:
            self.load_error = str(e)
            raise

    def resolve(self, requested: str | None) -> str:
        if requested is None or requested.lower() in self.names:
            return self.name
        raise ApiError(404, f"model {requested!r} not found; this server serves "
                       f"{', '.join(repr(n) for n in self.names)}", "not_found_error")

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self.model is not None:
            self.model.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shimmy-py"
    timeout = 60                 # seconds a client may stall mid-request before its connection closes
    drain_limit = 16 << 20       # bytes of an unread body read and dropped before closing (see _drop_body)
    state: State  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        # Events are small writes: without TCP_NODELAY, Nagle's algorithm holds
        # each one until the client's (delayed) ACK of the previous arrives.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- dispatch ----------------------------------------------------------------
    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._headers({"Content-Length": "0"})

    def do_GET(self) -> None:
        routes = {"/health": self.health, "/v1/models": self.v1_models, "/api/models": self.api_models,
                  "/metrics": self.metrics}
        self._dispatch(routes)

    def do_POST(self) -> None:
        routes = {"/api/generate": lambda: self.generate("generate"),
                  "/v1/chat/completions": lambda: self.generate("chat"),
                  "/v1/completions": lambda: self.generate("completions")}
        self._dispatch(routes)

    def _dispatch(self, routes) -> None:
        path = self.path.split("?", 1)[0]
        self._route, self._status = path if path in routes else "other", 0
        self._body_unread = self.command == "POST"
        try:
            if path not in routes:
                raise ApiError(404, f"no route {self.command} {path}", "not_found_error")
            if path not in ("/health",) and not self._authorized():
                raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                               "authentication_error")
            routes[path]()
        except ApiError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # never let a request take the server down
            logger.exception("internal error on %s", path)
            self._error(ApiError(500, f"internal error: {type(e).__name__}: {e}", "server_error"))
        finally:
            if self._body_unread:
                self._drop_body()
            self.state.metrics.request(self._route, self._status)

    def _drop_body(self) -> None:
        """After an answer given without reading the body (404, 401, 413): reads
        and drops it, so a client still sending gets that answer instead of a
        connection reset, then closes the connection (the body is not a request)."""
        self.close_connection = True
        length = self.headers.get("Content-Length", "")
        left = min(int(length), self.drain_limit) if length.isdigit() else 0
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass   # the client went away or stalled: closing is all that is left

    def _authorized(self) -> bool:
        key = self.state.config.api_key
        return not key or self.headers.get("Authorization", "") == f"Bearer {key}"

    # --- response helpers -----------------------------------------------------
    def _headers(self, extra: dict) -> None:
        if getattr(self, "_body_unread", False):   # the connection closes after this answer
            extra = {**extra, "Connection": "close"}
        for k, v in {**CORS, **extra}.items():
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

    def _error(self, e: ApiError) -> None:
        if self._status:  # headers already sent (a stream): nothing more can be said
            return
        body = openai_error(e) if self.path.startswith("/v1/") else {"error": e.message}
        self.send_json(e.status, body, e.headers)

    def log_message(self, fmt, *args) -> None:
        logger.info("%s %s", self.address_string(), fmt % args)

    # --- GET routes -----------------------------------------------------------
    def health(self) -> None:
        s = self.state
        if s.ready.is_set():
            self.send_json(200, {"status": "ok", "model": s.name, "ready": True})
        else:
            self.send_json(503, {"status": "error" if s.load_error else "loading", "ready": False,
                                 "error": s.load_error})

    def v1_models(self) -> None:
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "shimmy-py"} for n in self.state.names]
        self.send_json(200, {"object": "list", "data": data})

    def api_models(self) -> None:
        s = self.state
        models = []
        for name, path in sorted(s.all_names.items()):
            loaded = Path(path) == Path(s.config.model_path)
            models.append({"name": name, "size_bytes": path.stat().st_size, "model_type": "gguf",
                           "parameter_count": None, "source": "loaded" if loaded else "discovered"})
        self.send_json(200, {"models": models})

    def metrics(self) -> None:
        s = self.state
        plan = s.model.plan if s.model is not None else None
        text = s.metrics.render(plan.weights_by_device() if plan else {},
                                s.engine.stats if s.engine is not None else None)
        self.send_text(200, text, "text/plain; version=0.0.4")

    # --- POST routes ----------------------------------------------------------
    def read_json(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411 if length is None else 400, "a Content-Length header is required")
        if int(length) > self.state.config.max_body:
            raise ApiError(413, f"request body of {length} bytes exceeds {self.state.config.max_body}")
        self._body_unread = False   # read now, whole or (a stalled client) not at all
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"invalid JSON: {e}") from None

    def generate(self, route: str) -> None:
        body = self.read_json()
        req = parse_request(body, route)
        s = self.state
        if not s.ready.is_set():
            raise ApiError(503, "the model is still loading" if not s.load_error else s.load_error,
                           "server_error", {"Retry-After": "5"})
        name = s.resolve(req.model)
        s.enter()
        try:
            gen = self._start(req)
            if route == "generate":
                self._shimmy_answer(gen, name, req.stream)
            else:
                self._openai_answer(gen, name, route == "chat", req.stream)
        finally:
            s.leave()

    def _start(self, req: GenRequest):
        s = self.state
        model = s.model
        try:
            if req.messages is not None:
                tokens = model.tokenize(model.apply_chat_template(req.messages), parse_special=True)
            else:
                tokens = model.tokenize(req.prompt)
            max_tokens = req.max_tokens if req.max_tokens is not None else model.n_ctx
            source = s.engine.submit(tokens, req.sampling, max_tokens)
        except QueueFull as e:
            raise ApiError(503, f"server busy: {e}", "server_error", {"Retry-After": "1"}) from None
        except EngineFailed as e:
            raise ApiError(503, str(e), "server_error") from None
        except GenerationError as e:
            raise ApiError(400, str(e)) from None
        return run(source, model.vocab, max_tokens, req.stop)

    def _drain(self, gen, on_piece=None):
        """Runs `gen` (see generate.drain) and counts its Completion."""
        c = drain(gen, on_piece)
        self.state.metrics.completion(c)
        return c

    def _shimmy_answer(self, gen, name: str, stream: bool) -> None:
        if not stream:
            self.send_json(200, generate_response(name, self._drain(gen)))
            return
        self.start_sse()
        self._drain(gen, self.send_event)
        self.send_event("[DONE]")

    def _openai_answer(self, gen, name: str, chat: bool, stream: bool) -> None:
        shapes = OpenAIShapes(name, chat)
        if not stream:
            c = self._drain(gen)
            self.send_json(200, {**shapes.final(c), "timings": timing(c)})
            return
        self.start_sse()
        if chat:
            self.send_event(json.dumps(shapes.chunk(None, first=True), ensure_ascii=False))
        c = self._drain(gen, lambda p: self.send_event(json.dumps(shapes.chunk(p), ensure_ascii=False)))
        self.send_event(json.dumps(shapes.chunk(None, c.finish_reason, c=c), ensure_ascii=False))
        self.send_event("[DONE]")


class Server:
    """The HTTP server and its resident model; `start()` binds, then loads."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.state = State(config)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        try:
            self.httpd = ThreadingHTTPServer((config.host, config.port), handler)
        except OSError as e:
            raise ShimmyError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}"
                              + (" (the port is in use; pick another or --port 0)" if e.errno == 98 else "")) from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="shimmy-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self, load: bool = True) -> "Server":
        self._thread.start()
        if load:
            self.state.load()
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Ends open streams, stops serving, frees native memory once no
        handler uses the model any more (after `grace_s` it is left to exit)."""
        if self.state.engine is not None:
            self.state.engine.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.state.wait_idle(grace_s):
            self.state.close()
        else:
            logger.warning("requests still running after %.0f s; native memory is left to the OS", grace_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
