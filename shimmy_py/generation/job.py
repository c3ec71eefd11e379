"""A job: what a model is asked to compute, and nothing of how the request
came (as llama.cpp's server keeps `task_params` apart from the HTTP body).
Every dialect builds one (serving/dialects/parse.py); the worker receives it
whole and nothing HTTP-shaped: streaming, `include_usage`, `keep_alive` and
the number of choices stay on the server's side."""
from __future__ import annotations

from dataclasses import dataclass

from .chatting import ChatOptions
from .sampling import SamplingParams


@dataclass(frozen=True)
class Job:
    prompt: str | None               # raw text, no template
    messages: list | None            # chat messages, formatted with the model's template
    sampling: SamplingParams
    max_tokens: int | None           # None: until end of generation or a full context
    stop: tuple[str, ...] = ()
    chat: ChatOptions | None = None  # tools, tool_choice, reasoning_format, template variables (chats)
    context_limit: int | None = None  # Ollama's num_ctx: prompt and answer within this many tokens
    logprobs: int | None = None       # None: none; else each token's logprob and this many alternatives
    experts: bool = False             # each token's routed experts in the answer
