"""`shimmy-py serve`: shimmy's HTTP API and OpenAI's over the models a
server holds.

`App` is the application: the route table (routes.py), the Host check, the
API key, and every error as JSON in its route's dialect (app.py). The
transport (http.py) reads requests, hands them to `App.handle` and writes
what it answers. Each model lives in a worker process (worker.py,
supervised by supervisor.py) whose batching engine decodes every request's
sequence in shared llama_decode calls: a native crash there fails the
requests in flight and the worker restarts, while this process keeps
answering. Secure by default: loopback, no CORS headers, the Host header
checked against the bound address (DNS rebinding), the API key compared in
constant time, and errors that never show the server's paths.
"""
from __future__ import annotations

import logging
import threading

from ..errors import ShimmyError
from .app import ClientGone, Request, Response, as_api_error, authorized, error_body, scrub
from .config import CONTROL_THREADS, ServeConfig
from .http import HttpPolicy, host_allowed, origin_allowed
from .httperror import ApiError
from .routes import ROUTES, Route
from .state import State
from .transport import HttpServer

logger = logging.getLogger("shimmy_py.server")
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
__all__ = ["App", "ServeConfig", "Server"]


class App:
    """Routes a Request to its handler; answers every error in JSON."""

    def __init__(self, state: State, policy: HttpPolicy, routes: tuple[Route, ...] = ROUTES):
        self.state, self.policy = state, policy
        self.routes = {(r.method, r.path): r for r in routes}
        self.methods: dict[str, set[str]] = {}
        for r in routes:
            self.methods.setdefault(r.path, set()).add(r.method)

    def scrub(self, message: str) -> str:
        return scrub(message, self.state.path_names)

    def label(self, path: str) -> str:
        """The route's name in /metrics (unknown paths share one)."""
        return path if path in self.methods else "other"

    def route(self, req: Request) -> Route | None:
        return self.routes.get((req.method, req.path))

    def check(self, req: Request) -> Response | None:
        """What can be answered from the head alone, before the body is read:
        a CORS preflight, a refused Host, Origin, route, method or key. None:
        the request goes on to its handler."""
        try:
            if req.method not in METHODS:
                raise ApiError(501, f"method {req.method!r} is not supported", "invalid_request_error")
            if req.method == "OPTIONS" and self.policy.cors_origin is not None:
                return Response(204)          # a CORS preflight; the transport adds the headers
            if not host_allowed(req.headers.get("Host"), self.policy.allowed_hosts):
                raise ApiError(403, f"Host {req.headers.get('Host')!r} is not allowed (DNS rebinding protection; "
                               "serve --allowed-hosts adds names)", "permission_error")
            route = self.route(req)
            if route is None:
                if req.path in self.methods:
                    allow = ", ".join(sorted(self.methods[req.path]))
                    raise ApiError(405, f"{req.method} {req.path}: use {allow}", "invalid_request_error",
                                   {"Allow": allow})
                raise ApiError(404, f"no route {req.method} {req.path}", "not_found_error")
            if not route.public and not authorized(req, self.state.config.api_key):
                raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')",
                               "authentication_error")
            origin = req.headers.get("Origin")
            if req.method == "POST" and origin is not None and not origin_allowed(origin, self.policy.cors_origin):
                raise ApiError(403, f"a cross-site request from {origin!r} is refused: a web page cannot use this "
                               "server unless serve --cors-origin names its origin", "permission_error")
        except ApiError as e:
            return self.error(e, req)
        return None

    def run(self, req: Request) -> Response:
        """The route's handler (after check()); every error answered in JSON."""
        try:
            return self.route(req).handler(self, req)
        except ClientGone:
            raise
        except Exception as e:  # never let a request take the server down
            return self.error(e, req)

    def handle(self, req: Request) -> Response:
        """check(), then run(): the whole application for one request."""
        return self.check(req) or self.run(req)

    def error(self, e: BaseException, req: Request) -> Response:
        """An error as JSON in the dialect of the request's route, with no server paths."""
        route = self.route(req)
        dialect = route.dialect if route else "anthropic" if req.path.startswith("/v1/messages") else \
            "openai" if req.path.startswith("/v1/") else "shimmy"
        err = as_api_error(e)
        err = ApiError(err.status, self.scrub(err.message), err.kind, err.headers)
        return Response.json(err.status, error_body(err, dialect), err.headers)


class Server:
    """The HTTP server and its models; `start()` binds, then loads the --model."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.state = State(config)
        self.app = App(self.state, config.policy())
        try:
            self.httpd = HttpServer(self.app, self.state.metrics, self.app.policy, (config.host, config.port),
                                    model_threads=config.parallel + config.queue, control_threads=CONTROL_THREADS,
                                    max_pending=config.max_pending, stream_threads=config.stream_threads())
        except OSError as e:
            raise ShimmyError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}"
                              + (" (the port is in use; pick another or --port 0)" if e.errno == 98 else "")) from None
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="shimmy-http", daemon=True)

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self, load: bool = True) -> "Server":
        self._thread.start()
        if load:
            self.state.load()
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Ends open streams (the worker stops, freeing all native memory),
        then stops serving once the handlers have answered."""
        self.state.close()
        self.httpd.shutdown(grace_s)
        self.httpd.server_close()
        if not self.state.wait_idle(grace_s):
            logger.warning("requests still running after %.0f s", grace_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

