"""The server's HTTP policy (HttpPolicy: body limit, CORS origin, Host
names, timeouts) and the two checks made of a request's head by it: the
Host header (DNS rebinding) and a browser's Origin (cross-site requests).
The transport (transport.py, connection.py) enforces the rest."""
from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger("shimmy_py.server")


def host_allowed(host: str | None, allowed: frozenset | None) -> bool:
    """DNS rebinding: a page on evil.example whose name resolves to
    127.0.0.1 sends Host: evil.example; only the names allowed pass (None: any)."""
    if allowed is None:
        return True
    host = (host or "").strip().lower()
    if host.startswith("["):                      # [::1]:port
        host = host[:host.find("]") + 1]
    else:
        host = host.rsplit(":", 1)[0]
    return host in allowed


def origin_allowed(origin: str, cors_origin: str | None, host: str | None = None) -> bool:
    """A browser page may POST here from this server's own origin (the page at
    /: its Origin names the Host the request was sent to, which host_allowed
    has checked), or from the origin serve --cors-origin names (or any, with
    "*"): a cross-site page cannot make it run a model, whatever content type
    it sends (text/plain needs no preflight)."""
    if host and origin.rstrip("/").lower() in (f"http://{host}".lower(), f"https://{host}".lower()):
        return True
    return cors_origin is not None and (cors_origin == "*" or origin.rstrip("/") == cors_origin.rstrip("/"))


@dataclass(frozen=True)
class HttpPolicy:
    max_body: int
    cors_origin: str | None = None            # None: no CORS headers (browsers refuse cross-origin reads)
    allowed_hosts: frozenset | None = None    # Host header names accepted; None: any
    header_timeout: float = 10.0              # seconds for a request line and headers (and keep-alive idle)
    body_timeout: float = 60.0                # seconds a client may stall mid-body or mid-answer
