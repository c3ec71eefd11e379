"""The answers' shapes: shimmy's /api/generate object and OpenAI's chat and
text completions, whole or as stream chunks (deltas of content, reasoning
and tool calls), with usage and timings."""
from __future__ import annotations

import time
import uuid

from ..generation.loop import Completion


def usage(c: Completion) -> dict:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": c.cached_tokens}}


def timing(c: Completion) -> dict:
    return {"ttft_ms": round(c.ttft_s * 1000, 2),
            "tokens_per_second": round(c.tokens_per_s, 2) if c.tokens_per_s else None}


def generate_response(model: str, c: Completion) -> dict:
    """shimmy's /api/generate answer, with usage and timing added."""
    return {"response": c.text, "model": model, "done": True, "finish_reason": c.finish_reason,
            **usage(c), **timing(c)}


class OpenAIShapes:
    """Builds the objects of one OpenAI-style response (one id, one timestamp)."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.calls = 0                    # tool calls streamed so far: their index

    def _wrap(self, obj: str, choices: list, **extra) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def message(self, c: Completion) -> dict:
        msg = {"role": "assistant", "content": c.text if (c.text or not c.tool_calls) else None}
        if c.reasoning:
            msg["reasoning_content"] = c.reasoning
        if c.tool_calls:
            msg["tool_calls"] = [call.message() for call in c.tool_calls]
        return msg

    def final(self, c: Completion) -> dict:
        if self.chat:
            choice = {"index": 0, "message": self.message(c), "finish_reason": c.finish_reason,
                      "logprobs": None}
            return self._wrap("chat.completion", [choice], usage=usage(c))
        choice = {"index": 0, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
        return self._wrap("text_completion", [choice], usage=usage(c))

    def chunk(self, piece: str | None, finish: str | None = None, first: bool = False, c=None,
              kind: str = "content", value=None) -> dict:
        """A stream chunk: the opening role, a content or reasoning delta, a
        tool call (whole: its id, name and arguments in one fragment), or the
        last chunk with finish_reason (and usage)."""
        extra = {"usage": usage(c)} if c is not None else {}
        if self.chat:
            if first:
                delta = {"role": "assistant", "content": ""}
            elif kind == "tool_call":
                delta = {"tool_calls": [{"index": self.calls, **value.message()}]}
                self.calls += 1
            elif piece is None:
                delta = {}
            else:
                delta = {"reasoning_content" if kind == "reasoning" else "content": piece}
            return self._wrap("chat.completion.chunk",
                              [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra)
        return self._wrap("text_completion", [{"index": 0, "text": piece or "", "logprobs": None,
                                               "finish_reason": finish}], **extra)

    def usage_chunk(self, c: Completion) -> dict:
        """stream_options.include_usage: the last chunk, no choices, the usage."""
        return self._wrap("chat.completion.chunk" if self.chat else "text_completion", [], usage=usage(c))
