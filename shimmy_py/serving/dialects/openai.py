"""OpenAI's chat and text completions (POST /v1/chat/completions,
/v1/completions) and its model list (GET /v1/models): the request's fields
are parsed by parse.py and chat_fields.py, the answers' shapes are
shapes.py's, framed as SSE chunks here."""
from __future__ import annotations

import json

from ..http.app import App
from ..http.exchange import Request, Response
from .parse import parse_request
from .shapes import OpenAIShapes, routed_answer, routed_prompt, timing
from .streaming import SSEShapes, answer


def v1_models(app: App, req: Request) -> Response:
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "shimmy-py"}
            for n, path in sorted(app.state.catalog.items()) if path.exists()]   # files removed since: not listed
    return Response.json(200, {"object": "list", "data": data})


class OpenAIStreamShapes(SSEShapes, OpenAIShapes):
    """OpenAI's chat and text completions, whole or as chunks; n > 1 choices
    stream one after another, each chunk naming its choice's index."""

    def __init__(self, model: str, chat: bool, include_usage: bool = False):
        OpenAIShapes.__init__(self, model, chat)
        self.include_usage = include_usage

    def final(self, c, more=()) -> dict:
        return {**OpenAIShapes.final(self, c, more), "timings": timing(c)}

    def opening(self) -> list:
        return [json.dumps(self.chunk(None, first=True), ensure_ascii=False)] if self.chat else []

    def piece(self, kind: str, value) -> list:
        if not self.chat and kind != "content":
            return []
        chunk = self.chunk(value if kind != "tool_call" else None, kind=kind, value=value)
        return [json.dumps(chunk, ensure_ascii=False)]

    def choice_end(self, c) -> list:
        """A choice's finish_reason. Usage goes out once per stream: in this
        chunk, or, with stream_options.include_usage, only in the usage chunk
        that closes the stream (as OpenAI and llama-server send it; clients
        such as LangChain add up the usage of every chunk). It carries the
        timings, and with return_routed_experts the routing."""
        chunk = self.chunk(None, c.finish_reason, c=c, with_usage=not self.include_usage)
        chunk["timings"] = timing(c)            # as llama-server's last chunk carries them
        if c.experts is not None:               # return_routed_experts: as the whole answer carries them
            chunk["choices"][0]["routed_experts"] = routed_answer(c)
            chunk.update(routed_prompt(c))
        return [json.dumps(chunk, ensure_ascii=False)]

    def next_choice(self) -> None:
        self.index, self.calls = self.index + 1, 0

    def closing(self, c, more=()) -> list:
        last = self.choice_end(c)
        if self.include_usage:
            last.append(json.dumps(self.usage_chunk(c, more), ensure_ascii=False))
        return last + ["[DONE]"]


def chat_completions(app: App, req: Request) -> Response:
    return answer(app, req, parse_request(req.json(), "chat"),
                  lambda name, gr, clock: OpenAIStreamShapes(name, True, gr.include_usage))


def completions(app: App, req: Request) -> Response:
    return answer(app, req, parse_request(req.json(), "completions"),
                  lambda name, gr, clock: OpenAIStreamShapes(name, False, gr.include_usage))
