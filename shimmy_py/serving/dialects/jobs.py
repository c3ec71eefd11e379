"""The one way a body in any dialect becomes a job (generation/job.py), as
llama.cpp's server builds `task_params` from a request.

A dialect is a table `{client field: Field(job field, parser)}` (parse.py:
OpenAI's and shimmy's; ollama.py, anthropic.py, responses.py: theirs).
`read` checks the body holds only the table's fields, runs each field's
parser (which names the field as the client spelled it) and gathers the job
fields; `build` makes the request from them, with the checks that span
fields (a tool choice among the tools, a grammar beside tools), every error
naming the client's field. Bounds of sampling numbers are SamplingParams'
own (sampling.BOUNDS), so HTTP and the Python API accept the same values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ...generation.job import Job
from ...generation.sampling import BOUNDS, SamplingParams
from ..http.errors import bad
from . import chat_fields
from .known import known_fields


@dataclass(frozen=True)
class Field:
    """What one client field sets: the job field (a tuple: several, the
    parser then returns a tuple), and how its value becomes the job's
    (`parse(value, name as the client spelled it)`; None sets nothing).
    job None: a field accepted that changes nothing this server computes."""
    job: str | tuple[str, ...] | None
    parse: Callable[[Any, str], Any] = lambda value, name: None


@dataclass(frozen=True)
class Sub:
    """A field that is an object of its own fields (Ollama's `options`)."""
    table: Mapping[str, Field]


@dataclass(frozen=True)
class Shape:
    """What a route computes: its text from `needs` ("messages", "prompt" or
    "either"), whether it streams unless told, and its default token budget
    (None: until the end of generation or a full context)."""
    route: str
    needs: str
    stream: bool = False
    max_tokens: int | None = None


@dataclass(frozen=True)
class GenRequest:
    """A generation request as it came over HTTP: the job the model computes
    and what only the server's side reads."""
    model: str | None
    job: Job
    stream: bool = False
    keep_alive: float | None = None  # seconds the model stays loaded after this request; None: the server's
    include_usage: bool = False      # stream_options.include_usage: a last chunk with usage
    n: int = 1                       # choices: generations of the same prompt (OpenAI's routes)


SERVER_SIDE = ("model", "stream", "keep_alive", "include_usage", "n")
CHAT = ("tools", "tool_choice", "parallel_tool_calls", "reasoning_format", "template_kwargs", "thinking",
        "reasoning_effort")
JOB_FIELDS = {*SERVER_SIDE, *CHAT, *BOUNDS, "prompt", "messages", "system", "max_tokens", "stop", "logit_bias",
              "grammar", "logprobs", "top_logprobs", "experts", "context_limit"}


class JobFields:
    """The job fields a body set, each with the client's name for it."""

    def __init__(self):
        self.values: dict[str, Any] = {}
        self.names: dict[str, str] = {}

    def set(self, job: str, value: Any, name: str) -> None:
        assert job in JOB_FIELDS or job.startswith("_"), job   # "_name": a dialect's own, popped before build
        if job in self.values and self.values[job] != value:
            raise bad(f"'{self.names[job]}' and '{name}' disagree; give one", name)
        self.values[job], self.names[job] = value, name

    def get(self, job: str, default=None):
        return self.values.get(job, default)

    def pop(self, job: str, default=None):
        self.names.pop(job, None)
        return self.values.pop(job, default)

    def name(self, job: str) -> str:
        return self.names.get(job, job)


def read(body: Any, table: Mapping[str, Field | Sub], route: str | None = None) -> JobFields:
    """The job fields of `body` by `table`; a field not in it is a 400 naming it."""
    out = JobFields()
    _read(known_fields(body, table, route=route), table, "", out)
    return out


def _read(body: dict, table: Mapping[str, Field | Sub], prefix: str, out: JobFields) -> None:
    for key, value in body.items():
        name, entry = prefix + key, table[key]
        if value is None:
            continue
        if isinstance(entry, Sub):
            _read(known_fields(value, entry.table, f"'{name}'"), entry.table, name + ".", out)
            continue
        parsed = entry.parse(value, name)
        if entry.job is None or parsed is None:
            continue
        jobs, values = (entry.job, parsed) if isinstance(entry.job, tuple) else ((entry.job,), (parsed,))
        for job, v in zip(jobs, values):
            if v is not None:
                out.set(job, v, name)


def build(f: JobFields, shape: Shape) -> GenRequest:
    """The request the job fields make on a route of `shape`."""
    messages, prompt = _text(f, shape)
    chat = chat_fields.chat_options(f) if messages is not None else None
    sampling = _sampling(f)
    if chat is not None and chat.tools and chat.tool_choice != "none" and sampling.grammar:
        raise bad(f"'{f.name('tools')}' cannot be combined with a grammar or {f.name('grammar')!r}: the tool calls "
                  "have their own grammar")
    stream = f.get("stream", shape.stream)
    experts = f.get("experts", False)
    if experts and stream and shape.route == "generate":
        raise bad("'return_routed_experts' comes with the whole answer here (OpenAI's routes also put it in a "
                  "stream's last chunk): set \"stream\": false", "return_routed_experts")
    job = Job(prompt, messages, sampling, f.get("max_tokens", shape.max_tokens), f.get("stop", ()), chat,
              context_limit=f.get("context_limit"), logprobs=_logprobs(f), experts=experts)
    return GenRequest(f.get("model"), job, stream, f.get("keep_alive"), f.get("include_usage", False),
                      f.get("n", 1))


def _text(f: JobFields, shape: Shape) -> tuple[list | None, str | None]:
    """The messages (the system text first) or the prompt."""
    messages, prompt, system = f.get("messages"), f.get("prompt"), f.get("system")
    if shape.needs == "messages" and messages is None:
        raise bad("'messages' is required", "messages")
    if shape.needs != "messages" and prompt is None and messages is None:
        raise bad("'prompt' is required" + (" (or 'messages')" if shape.needs == "either" else ""), "prompt")
    if messages is not None and prompt is not None:
        raise bad(f"give '{f.name('prompt')}' or '{f.name('messages')}', not both")
    if messages is None:
        unused = [f.name(k) for k in (*CHAT, "system") if k in f.values]
        if unused:
            raise bad(f"'{unused[0]}' applies to a chat: send 'messages' (a 'prompt' is text as it is)", unused[0])
        if not prompt:
            raise bad("'prompt' is empty", "prompt")
        return None, prompt
    messages = ([{"role": "system", "content": system}] if system else []) + messages
    if not messages:
        raise bad(f"'{f.name('messages')}' is empty", "messages")
    return messages, None


def _sampling(f: JobFields) -> SamplingParams:
    numbers = {key: f.values[key] for key in BOUNDS if key in f.values}
    return SamplingParams.build(**numbers, logit_bias=f.get("logit_bias", ()), grammar=f.get("grammar", ""))


def _logprobs(f: JobFields) -> int | None:
    top = f.get("top_logprobs")
    if top is not None and not f.get("logprobs"):
        raise bad(f"'{f.name('top_logprobs')}' needs '{f.name('logprobs')}': true", "top_logprobs")
    return (top or 0) if f.get("logprobs") else None
