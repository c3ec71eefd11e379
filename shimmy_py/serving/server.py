"""`shimmy-py serve`: shimmy's HTTP API and OpenAI's on one resident model.

A bounded pool of handler threads (http.py) answers the routes here. The
model lives in a worker process (worker.py, supervised by supervisor.py)
whose batching engine decodes every request's sequence in shared
llama_decode calls: a native crash there fails the requests in flight and
the worker restarts, while this process keeps answering. Handlers consume
the worker's pieces as a generator; a client that goes away closes it,
which frees its sequence.
Secure by default: loopback, no CORS headers, the Host header checked
against the bound address (DNS rebinding), the API key compared in constant
time, and errors that never show the server's paths.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from pathlib import Path
from types import SimpleNamespace

from ..errors import ShimmyError
from ..generation.loop import drain
from .api import (
    ApiError,
    OpenAIShapes,
    generate_response,
    parse_request,
    timing,
)
from .http import ClientGone, JsonHandler, PooledHTTPServer
from .state import ServeConfig, State
from .supervisor import WorkerDied

logger = logging.getLogger("shimmy_py.server")
CLIENT_CHECK_EVERY = 8          # pieces between checks that a non-streaming client is still there
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]+")


class Handler(JsonHandler):
    """The routes; HTTP mechanics are JsonHandler's (http.py)."""
    state: State  # set on the subclass made per server

    GET = {"/health": "health", "/v1/models": "v1_models", "/api/models": "api_models", "/metrics": "metrics",
           "/api/ps": "api_ps"}
    POST = {"/api/generate": "generate", "/v1/chat/completions": "chat", "/v1/completions": "completions"}

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def do_OPTIONS(self) -> None:
        if self.policy.cors_origin is None:
            self._dispatch()                      # no CORS: a preflight is a 405 like any other method
            return
        self._status = 204
        self.send_response(204)
        self._headers({"Content-Length": "0"})

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        known = path in self.GET or path in self.POST
        self._route, self._status = path if known else "other", 0
        self._body_unread = self.command not in ("GET", "HEAD")
        self.connection.settimeout(self.policy.body_timeout)
        try:
            self._route_request(path)
        except ApiError as e:
            self.send_api_error(self._scrubbed(e))
        except (ClientGone, OSError):
            self.close_connection = True          # the client went away: nobody to answer
        except Exception as e:  # never let a request take the server down
            logger.exception("internal error on %s", path)
            self.send_api_error(ApiError(500, f"internal error ({type(e).__name__}); see the server log",
                                         "server_error"))
        finally:
            if self._body_unread:
                self.drop_body()
            self.state.metrics.request(self._route, self._status)
            self.connection.settimeout(self.policy.header_timeout)

    def _route_request(self, path: str) -> None:
        if not self.host_allowed():
            raise ApiError(403, f"Host {self.headers.get('Host')!r} is not allowed (DNS rebinding protection; "
                           "serve --allowed-hosts adds names)", "permission_error")
        routes = self.GET if self.command == "GET" else self.POST if self.command == "POST" else {}
        if path not in routes:
            if path in self.GET or path in self.POST:
                allow = "GET" if path in self.GET else "POST"
                raise ApiError(405, f"{self.command} {path}: use {allow}", "invalid_request_error",
                               {"Allow": allow})
            raise ApiError(404, f"no route {self.command} {path}", "not_found_error")
        if path != "/health" and not self._authorized():
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                           "authentication_error")
        name = routes[path]
        if self.command == "POST":
            self.generate(name)
        else:
            getattr(self, name)()

    def _authorized(self) -> bool:
        key = self.state.config.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    def _scrubbed(self, e: ApiError) -> ApiError:
        """Errors name models, never the server's filesystem paths."""
        message = e.message
        for path, name in self.state.path_names.items():
            message = message.replace(path, name)
        message = _ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name, message)
        if message == e.message:
            return e
        return ApiError(e.status, message, e.kind, e.headers)

    # --- GET routes -----------------------------------------------------------
    def health(self) -> None:
        s, main = self.state, self.state.main
        w = main.supervisor if main is not None else None
        crash = {"restarts": w.restarts if w else 0, "last_crash": w.last_crash if w else None}
        if s.name is None:                    # models on demand: the server itself is what is healthy
            self.send_json(200, {"status": "ok", "ready": True, "loaded": sorted(s.pool.residents)})
        elif w is not None and w.ready.is_set():
            self.send_json(200, {"status": "ok", "model": s.name, "ready": True, **crash})
        else:
            error = s.load_error or (w.load_error if w else None)
            error = self._scrubbed(ApiError(503, error)).message if error else None
            self.send_json(503, {"status": "error" if error else "loading", "ready": False, "error": error, **crash})

    def v1_models(self) -> None:
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "shimmy-py"} for n in sorted(self.state.catalog)]
        self.send_json(200, {"object": "list", "data": data})

    def api_models(self) -> None:
        s = self.state
        resident = set(s.pool.residents)
        models = []
        for name, path in sorted(s.catalog.items()):
            try:
                size = path.stat().st_size
            except OSError:           # deleted or unreadable since discovery: not listed
                continue
            loaded = s.canonical(name) in resident
            d = s.describe(path)
            models.append({"name": name, "size_bytes": size, "model_type": "gguf",
                           "parameter_count": d.params if d else None,
                           "active_parameter_count": d.active_params if d else None,
                           "architecture": d.architecture if d else None, "quantization": d.quantization if d else None,
                           "loaded": loaded, "source": "loaded" if loaded else "discovered"})
        self.send_json(200, {"models": models})

    def api_ps(self) -> None:
        self.send_json(200, {"models": self.state.pool.snapshot()})

    def metrics(self) -> None:
        pool = self.state.pool
        residents = list(pool.residents.values())
        devices: dict[str, int] = {}
        totals: dict[str, float] = {}
        for r in residents:
            for d, b in r.supervisor.info.get("devices", {}).items():
                devices[d] = devices.get(d, 0) + b
            for k, v in (r.supervisor.stats() or {}).items():
                totals[k] = totals.get(k, 0) + v
        engine = SimpleNamespace(**totals) if totals else None
        text = self.state.metrics.render(devices, engine, sum(r.supervisor.restarts for r in residents), pool)
        self.send_text(200, text, "text/plain; version=0.0.4")

    # --- POST routes ----------------------------------------------------------
    def read_json(self):
        raw = self.read_body()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"invalid JSON: {e}") from None
        except RecursionError:
            raise ApiError(400, "invalid JSON: nested too deeply") from None

    def generate(self, route: str) -> None:
        body = self.read_json()
        req = parse_request(body, route)
        s = self.state
        name = s.resolve(req.model)
        if s.name is not None and name == s.canonical(s.name) and s.main is None:
            raise ApiError(503, "the model is still loading" if not s.load_error else s.load_error,
                           "server_error", {"Retry-After": "5"})
        s.enter()
        try:
            resident = s.pool.acquire(name, req.keep_alive)    # loads it if it is not resident
            try:
                gen = resident.supervisor.generate(req)        # the worker tokenizes and queues it
                if route == "generate":
                    self._shimmy_answer(gen, name, req.stream)
                else:
                    self._openai_answer(gen, name, route == "chat", req.stream)
            finally:
                s.pool.release(resident, req.keep_alive)
        finally:
            s.leave()

    def _drain(self, gen, on_piece=None):
        """Runs `gen` (see generation.loop.drain) and counts its Completion. A
        non-streaming answer checks every few pieces that its client is still
        there; one that left ends the generation (its sequence is freed). If
        the model worker dies meanwhile, a stream ends with an error event
        (its status was sent) and None is returned."""
        try:
            c = drain(gen, on_piece if on_piece is not None else self._still_there)
        except WorkerDied as e:
            if not self._status:
                raise ApiError(503, str(e), "server_error", {"Retry-After": "5"}) from None
            self.send_event(json.dumps({"error": {"message": str(e), "type": "server_error", "code": 503}}))
            self.send_event("[DONE]")
            return None
        self.state.metrics.completion(c)
        return c

    def _still_there(self, _piece: str) -> None:
        self._pieces = getattr(self, "_pieces", 0) + 1
        if self._pieces % CLIENT_CHECK_EVERY == 0 and self.client_gone():
            raise ClientGone()

    def _shimmy_answer(self, gen, name: str, stream: bool) -> None:
        if not stream:
            self.send_json(200, generate_response(name, self._drain(gen)))
            return
        self.start_sse()
        if self._drain(gen, self.send_event) is not None:
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
        if c is None:
            return
        self.send_event(json.dumps(shapes.chunk(None, c.finish_reason, c=c), ensure_ascii=False))
        self.send_event("[DONE]")


class Server:
    """The HTTP server and its resident model; `start()` binds, then loads."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.state = State(config)
        handler = type("BoundHandler", (Handler,), {"state": self.state, "policy": config.policy()})
        try:
            self.httpd = PooledHTTPServer((config.host, config.port), handler, config.handler_threads(),
                                          config.max_pending)
        except OSError as e:
            raise ShimmyError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}"
                              + (" (the port is in use; pick another or --port 0)" if e.errno == 98 else "")) from None
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
        """Ends open streams (the worker stops, freeing all native memory),
        then stops serving once the handlers have answered."""
        self.state.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        if not self.state.wait_idle(grace_s):
            logger.warning("requests still running after %.0f s", grace_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
