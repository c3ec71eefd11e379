"""An HTTP error answer (ApiError: status, message, OpenAI error type, extra
headers) and its OpenAI shape; raised by request validation and the HTTP
layer, and what app.py turns every domain error into."""
from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answer: status, message and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers=None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}


def openai_error(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "param": None, "code": e.status}}
