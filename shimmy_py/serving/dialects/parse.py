"""The tables of the generation routes OpenAI's clients and shimmy's own
speak: /v1/chat/completions, /v1/completions and shimmy's /api/generate
(jobs.py reads them; the chat fields' parsers: chat_fields.py; the answers'
shapes: shapes.py).

OpenAI's optional fields that change nothing a local server computes (user,
metadata, store, service_tier, ...) are accepted; any other field a route
does not know is a 400 naming it.
"""
from __future__ import annotations

from typing import Any

from ... import defaults
from . import chat_fields as c
from . import values as v
from .jobs import Field, GenRequest, Shape, build, read

HARMLESS = {key: Field(None) for key in ("user", "metadata", "store", "service_tier", "prediction",
                                         "safety_identifier", "prompt_cache_key")}
HARMLESS.update({          # llama-server's cache_prompt, OpenAI's modalities: only the values that change nothing
    "cache_prompt": Field(None, v.refuse("false is not supported: prompts are always reused where they match",
                                         allowed=(True,))),
    "modalities": Field(None, v.refuse("takes [\"text\"] only: this server's models give text only",
                                       allowed=(["text"],))),
})
COMMON = {
    "model": Field("model", v.text), "max_tokens": Field("max_tokens", v.positive),
    "stream": Field("stream", v.boolean), "stop": Field("stop", v.stops), "keep_alive": Field("keep_alive", v.duration),
    "return_routed_experts": Field("experts", v.boolean), "logit_bias": Field("logit_bias", v.logit_bias),
    **{key: Field(key, parse) for key, parse in v.SAMPLED.items()}, **HARMLESS,
}
GRAMMAR = {"response_format": Field("grammar", c.response_format), "grammar": Field("grammar", v.text),
           "json_schema": Field("grammar", c.json_schema)}
CHAT = {
    "messages": Field("messages", c.messages), "tools": Field("tools", c.tools),
    "tool_choice": Field("tool_choice", c.tool_choice), "parallel_tool_calls": Field("parallel_tool_calls", v.boolean),
    "functions": Field("tools", c.functions), "function_call": Field("tool_choice", c.function_call),
    "reasoning_format": Field("reasoning_format", c.reasoning_format),
    "chat_template_kwargs": Field("template_kwargs", c.template_kwargs),
    "reasoning_effort": Field(("thinking", "reasoning_effort"), c.reasoning_effort),
    "max_completion_tokens": Field("max_tokens", v.positive),       # OpenAI's current name; langchain sends it
    **GRAMMAR,
}
CHOICES = {"n": Field("n", v.number(1, v.MAX_CHOICES, integer=True)),
           "stream_options": Field("include_usage", v.stream_options)}
TOP_LOGPROBS = v.number(0, v.MAX_TOP_LOGPROBS, integer=True)

TABLES = {
    "generate": {**COMMON, **CHAT, "prompt": Field("prompt", v.text), "system": Field("system", v.text),
                 "n": Field("n", v.number(1, 1, integer=True))},
    "chat": {**COMMON, **CHAT, **CHOICES, "logprobs": Field("logprobs", v.boolean),
             "top_logprobs": Field("top_logprobs", TOP_LOGPROBS)},
    "completions": {**COMMON, **GRAMMAR, **CHOICES, "prompt": Field("prompt", v.text),
                    "logprobs": Field(("logprobs", "top_logprobs"), lambda n, name: (True, TOP_LOGPROBS(n, name)))},
}
SHAPES = {"generate": Shape("generate", "either", stream=True, max_tokens=defaults.MAX_TOKENS),
          "chat": Shape("chat", "messages"), "completions": Shape("completions", "prompt")}


def parse_request(body: Any, route: str) -> GenRequest:
    """A request of `route` ("generate": shimmy's, "chat", "completions": OpenAI's)."""
    return build(read(body, TABLES[route]), SHAPES[route])
