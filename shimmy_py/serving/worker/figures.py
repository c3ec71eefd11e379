"""The engine's figures a worker reports in each heartbeat, as one table:
each row names the figure, where the worker reads it (the engine's stats or
its host cache), whether it is a counter (summed over a model's worker
processes, kept after they end, so /metrics only grows) or a gauge (resident
models only), and its /metrics name and help. A new figure is a row here:
the worker sends it, the supervisor carries it over restarts, /metrics
renders it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Figure:
    key: str                                  # its name in the heartbeat
    read: Callable[[Any, Any], Any]           # (engine stats, host cache) -> value
    counter: bool                             # else a gauge
    metric: str | None = None                 # its /metrics name; None: not exported (threads: /api/ps)
    help: str = ""
    decimals: int | None = None               # a float's digits in /metrics


FIGURES = (
    Figure("queue_depth", lambda s, c: s.queue_depth, False, "shimmy_queue_depth"),
    Figure("active", lambda s, c: s.active, False, "shimmy_active_sequences"),
    Figure("steps", lambda s, c: s.steps, True),
    Figure("threads", lambda s, c: s.threads, False),
    Figure("step_s", lambda s, c: s.step_s, True, "shimmy_engine_step_seconds_total",
           "Engine steps: batch, decode, sampling.", 6),
    Figure("decode_s", lambda s, c: s.decode_s, True, "shimmy_engine_decode_seconds_total",
           "Of which inside llama_decode.", 6),
    Figure("batch_tokens", lambda s, c: s.batch_tokens, True, "shimmy_engine_batch_tokens_total"),
    Figure("shared_tokens", lambda s, c: s.shared_tokens, True, "shimmy_prompt_tokens_shared_total",
           "Prompt tokens taken from another sequence's cache (n > 1 choices, a repeated prompt) instead of "
           "decoded."),
    Figure("draft_tokens", lambda s, c: s.draft_tokens, True, "shimmy_draft_tokens_total",
           "Speculative decoding: draft tokens verified."),
    Figure("draft_accepted", lambda s, c: s.draft_accepted, True, "shimmy_draft_tokens_accepted_total",
           "Speculative decoding: draft tokens the model kept."),
    Figure("cache_ram_bytes", lambda s, c: c.bytes, False, "shimmy_cache_ram_bytes",
           "Host RAM holding conversations saved from their slot."),
    Figure("cache_ram_hits", lambda s, c: c.hits, True, "shimmy_cache_ram_hits_total"),
    Figure("cache_ram_saves", lambda s, c: c.saves, True, "shimmy_cache_ram_saves_total"),
    Figure("stream_routed", lambda s, c: s.stream.routed if s.stream else 0, True,
           "shimmy_stream_routed_slices_total", "Experts streaming from the file: expert slices routed to."),
    Figure("stream_missed", lambda s, c: s.stream.missed if s.stream else 0, True,
           "shimmy_stream_missed_slices_total", "Of which not in RAM when routed: read from the file."),
    Figure("stream_file_bytes", lambda s, c: s.stream.bytes_read if s.stream else 0, True,
           "shimmy_stream_file_bytes_total", "Bytes of streamed experts read from the file."),
    Figure("stream_tokens", lambda s, c: s.stream.tokens if s.stream else 0, True,
           "shimmy_stream_tokens_total", "Tokens whose routing the streamer read."),
)
COUNTERS = tuple(f.key for f in FIGURES if f.counter)     # carried over restarts; the rest are gauges


def read_all(stats, cache) -> dict:
    """Every figure of an engine, for its heartbeat."""
    return {f.key: f.read(stats, cache) for f in FIGURES}


def exposition(values: dict) -> list[str]:
    """The exported figures in Prometheus' text format, from summed values
    (a figure no worker reported is 0)."""
    lines = []
    for f in FIGURES:
        if f.metric is None:
            continue
        value = values.get(f.key, 0)
        if f.help:
            lines.append(f"# HELP {f.metric} {f.help}")
        lines += [f"# TYPE {f.metric} {'counter' if f.counter else 'gauge'}",
                  f"{f.metric} {value:.{f.decimals}f}" if f.decimals is not None else f"{f.metric} {value}"]
    return lines
