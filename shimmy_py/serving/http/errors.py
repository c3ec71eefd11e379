"""An HTTP error answer (ApiError: status, message, OpenAI error type, extra
headers) and its shape in each dialect (SHAPES: a dialect's error shape is a
row there); raised by request validation and the HTTP layer, and what
exchange.py turns every domain error into."""
from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answer: status, message and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers=None,
                 field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}
        self.field = field               # the request field it names, as the client spelled it


def bad(message: str, field: str | None = None) -> ApiError:
    """A 400 naming what is wrong with the request (and the field, if one)."""
    return ApiError(400, message, field=field)


def openai_error(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "param": e.field, "code": e.status}}


ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error",
                   429: "rate_limit_error", 503: "overloaded_error"}


def anthropic_error(e: ApiError) -> dict:
    return {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(e.status, "api_error"), "message": e.message}}


def shimmy_error(e: ApiError) -> dict:
    return {"error": e.message}


# the error body each dialect's clients parse, by the dialect a Route names (shimmy's and Ollama's: {"error": ...})
SHAPES = {"shimmy": shimmy_error, "openai": openai_error, "anthropic": anthropic_error}
# a path no route answers is answered in the dialect of its prefix (the first that matches)
PREFIXES = (("/v1/messages", "anthropic"), ("/v1/", "openai"), ("/", "shimmy"))


def dialect_of(path: str) -> str:
    """The dialect of a path that no route answers."""
    return next(d for prefix, d in PREFIXES if path.startswith(prefix))


def error_body(e: ApiError, dialect: str) -> dict:
    """The error in the shape the route's clients parse."""
    return SHAPES[dialect](e)
