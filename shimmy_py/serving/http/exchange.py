"""The server's application, apart from HTTP mechanics: a `Request` in (the
transport reads it: transport.py), a `Response` out (JSON, text, or a stream of
events the transport writes and flushes one by one). `App.handle` checks the
Host header and the API key, finds the route (dialects/routes.py: one handler per
route), runs it, and turns every error into JSON in the dialect's own
shape: a domain error (GenerationError, NotFound, Unavailable, ...) becomes
its status here and only here.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ...errors import BrokenModel, GenerationError, GGUFError, NotFound, PlacementError, ShimmyError, Unavailable
from .errors import ApiError

logger = logging.getLogger("shimmy_py.server")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]+")


class ClientGone(Exception):
    """The client closed its connection while its answer was being computed."""


@dataclass
class Request:
    """One HTTP request as the application sees it. The body is read when a
    handler asks for it (an early 401 or 404 never reads it)."""
    method: str
    path: str
    headers: Mapping[str, str]           # case-insensitive (the transport's)
    read_body: Callable[[], bytes]
    client_gone: Callable[[], bool] = lambda: False
    query: str = ""

    def json(self) -> Any:
        raw = self.read_body()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"invalid JSON: {e}") from None
        except RecursionError:
            raise ApiError(400, "invalid JSON: nested too deeply") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    stream: Iterator[bytes] | None = None   # chunks written and flushed one by one; closed if the client leaves
    ready: bytes = b""                      # a stream's chunks made at once, written with the head

    @classmethod
    def json(cls, status: int, obj, headers: dict | None = None) -> "Response":
        return cls(status, json.dumps(obj, ensure_ascii=False).encode(), headers=dict(headers or {}))

    @classmethod
    def text(cls, status: int, text: str, content_type: str) -> "Response":
        return cls(status, text.encode(), content_type)

    @classmethod
    def events(cls, chunks: Iterator[bytes], content_type: str = "text/event-stream", ready: bytes = b"") -> "Response":
        return cls(200, content_type=content_type, stream=chunks, headers={"Cache-Control": "no-cache"}, ready=ready)


def sse(data: str) -> bytes:
    """One SSE event; each line of `data` becomes its own data: line."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return ("".join(f"data: {line}\n" for line in lines) + "\n").encode()


def as_api_error(e: BaseException) -> ApiError:
    """The status of a domain error: the one place they meet HTTP."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, Unavailable):
        headers = {"Retry-After": str(round(e.retry_after))} if e.retry_after is not None else {}
        return ApiError(503, str(e), "server_error", headers)
    if isinstance(e, NotFound):
        return ApiError(404, str(e), "not_found_error")
    if isinstance(e, (BrokenModel, GGUFError)):     # the named model's file: there, but not usable
        return ApiError(422, str(e), "invalid_request_error")
    if isinstance(e, (GenerationError, PlacementError)):
        return ApiError(400, str(e))
    if isinstance(e, ShimmyError):
        return ApiError(500, str(e), "server_error")
    logger.error("internal error", exc_info=e)
    return ApiError(500, f"internal error ({type(e).__name__}); see the server log", "server_error")


def scrub(message: str, path_names: Mapping[str, str], keep: tuple[str, ...] = ()) -> str:
    """Errors name models, never the server's filesystem paths; `keep`: what
    the client sent itself (the request's path: "no route GET /api/x" keeps
    its /api/x), left as it is."""
    if keep and keep[0] and keep[0] in message:
        return keep[0].join(scrub(part, path_names, keep[1:]) for part in message.split(keep[0]))
    for path, name in path_names.items():
        message = message.replace(path, name)
    return _ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name, message)


def authorized(request: Request, key: str | None) -> bool:
    """`Authorization: Bearer KEY` (or Anthropic's `x-api-key: KEY`), compared
    in constant time."""
    if not key:
        return True
    bearer = request.headers.get("Authorization", "")
    x_key = request.headers.get("x-api-key", "")
    return hmac.compare_digest(bearer.encode(), f"Bearer {key}".encode()) | \
        hmac.compare_digest(x_key.encode(), key.encode())
