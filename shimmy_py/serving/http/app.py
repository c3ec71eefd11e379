"""The application: the route table (a Route per method and path, its
handler, its dialect's error shape), the checks made from a request's head
(method, CORS preflight, Host, route, API key, Origin), and every error
answered as JSON in the route's dialect. `state` is what the handlers share
(models/state.py); nothing here imports a dialect or a model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import SHAPES, ApiError, dialect_of, error_body
from .exchange import ClientGone, Request, Response, as_api_error, authorized, scrub
from .policy import HttpPolicy, host_allowed, origin_allowed

METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[["App", Request], Response]
    dialect: str = "shimmy"     # the error shape its clients parse (errors.SHAPES)
    public: bool = False        # answered without the API key (health checks)
    model: bool = False         # runs a model: its handler runs on the model routes' threads

    def __post_init__(self):
        if self.dialect not in SHAPES:
            raise ValueError(f"route {self.method} {self.path}: no error shape for dialect {self.dialect!r}")


class App:
    """Routes a Request to its handler; answers every error in JSON."""

    def __init__(self, state: Any, policy: HttpPolicy, routes: tuple[Route, ...]):
        self.state, self.policy = state, policy
        self.routes = {(r.method, r.path): r for r in routes}
        self.methods: dict[str, set[str]] = {}
        for r in routes:
            self.methods.setdefault(r.path, set()).add(r.method)

    def scrub(self, message: str, keep: tuple[str, ...] = ()) -> str:
        return scrub(message, self.state.catalog.path_names, keep)

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
            # the page at / posts from the server's own origin: trusted where the Host is checked (a name a
            # DNS-rebinding page cannot take); bound to all interfaces, only with --allowed-hosts
            own = req.headers.get("Host") if self.policy.allowed_hosts is not None else None
            if req.method == "POST" and origin is not None and not origin_allowed(origin, self.policy.cors_origin, own):
                raise ApiError(403, f"a cross-site request from {origin!r} is refused: a web page cannot use this "
                               "server unless serve --cors-origin names its origin (bound to all interfaces, "
                               "--allowed-hosts names the hosts whose own page may)", "permission_error")
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
        dialect = route.dialect if route else dialect_of(req.path)
        err = as_api_error(e)
        err = ApiError(err.status, self.scrub(err.message, keep=(req.path,)), err.kind, err.headers)
        return Response.json(err.status, error_body(err, dialect), err.headers)
