"""The messages between the server and a model worker (supervisor.py <->
process.py), as small frozen records dispatched by type: llama.cpp's server
has `server_task_type` and `struct server_task` for the same purpose.

Server -> worker: `Generate` (a streamed generation), any `Call` (a request
answered by one value: tokenize, embed, ...), `Cancel`, `CacheLimit`,
`Threads`, `Stop`. Worker -> server: `Ready` or `LoadFailed` once, then `Piece`s and
`Done` for a generation, `Result` for a call, `Failed` for either, and a
`Heartbeat` with the engine's counters every second (watchdog.py).

A model-backed endpoint is a route (dialects/routes.py), a `Call` subclass here,
and the worker method that answers it (process.py's CALLS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...generation.job import Job
from ...generation.loop import Completion


# --- server -> worker ----------------------------------------------------------------
@dataclass(frozen=True)
class Generate:
    job: Job
    rid: int = 0                      # set by the supervisor: the replies carry it


@dataclass(frozen=True)
class Call:
    """A request answered by one value (Result) or an error (Failed)."""
    rid: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class Tokenize(Call):
    text: str
    add_special: bool = False         # BOS (and EOS) as the model asks
    parse_special: bool = True        # special tokens' text as those tokens
    with_pieces: bool = False         # each token's text beside its id


@dataclass(frozen=True)
class Detokenize(Call):
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Embed(Call):
    """Pooled embeddings of each input (text, or token ids)."""
    inputs: tuple
    normalize: bool = True


@dataclass(frozen=True)
class RenderChat(Call):
    """A chat request's prompt (template, tools) and its token count, not generated."""
    job: Job


@dataclass(frozen=True)
class Cancel:
    rid: int                          # the client went away: stop at the next piece


@dataclass(frozen=True)
class CacheLimit:
    bytes: int                        # the host-RAM conversation cache's new bound


@dataclass(frozen=True)
class Threads:
    n: int                            # CPU threads to compute with from the next step (threads.py)


@dataclass(frozen=True)
class Stop:
    """End the open streams and exit."""


# --- worker -> server ----------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    info: dict                        # n_ctx, the weights per device


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class Piece:
    rid: int
    text: str                         # "content" or "reasoning" text; for a "tool_call", ""
    kind: str = "content"
    call: Any = None                  # the ToolCall of a "tool_call" piece


@dataclass(frozen=True)
class Done:
    rid: int
    completion: Completion | None     # None: cancelled


@dataclass(frozen=True)
class Result:
    rid: int
    value: Any


BUSY, UNAVAILABLE, INVALID, INTERNAL = "busy", "unavailable", "invalid", "internal"


@dataclass(frozen=True)
class Failed:
    rid: int
    kind: str                         # BUSY (queue full), UNAVAILABLE, INVALID (the request), INTERNAL
    message: str


@dataclass(frozen=True)
class Heartbeat:
    values: dict                      # the engine's counters: steps, active, queue depth, cache, ...
