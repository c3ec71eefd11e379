"""An HTTP error answer (ApiError: status, message, OpenAI error type, extra
headers) and its shapes in OpenAI's and Anthropic's dialects; raised by
request validation and the HTTP layer, and what app.py turns every domain
error into."""
from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answer: status, message and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers=None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}


def bad(message: str) -> ApiError:
    """A 400 naming what is wrong with the request."""
    return ApiError(400, message)


def openai_error(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "param": None, "code": e.status}}


ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error",
                   429: "rate_limit_error", 503: "overloaded_error"}


def anthropic_error(e: ApiError) -> dict:
    return {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(e.status, "api_error"), "message": e.message}}
