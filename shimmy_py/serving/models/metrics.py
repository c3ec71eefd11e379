"""The server's /metrics, in Prometheus' text exposition format, as tables:
what each answered request adds (COMPLETIONS), what the pool of resident
models reports (POOL), and the engines' figures (worker/figures.py's
FIGURES). A new figure is a row in one of them."""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from ..worker.figures import exposition


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class Row:
    """One figure: its /metrics name, its kind ("counter": the sum;
    "summary": sum and count; "mean": sum over count, as a gauge; "gauge"),
    where its value comes from (a completion's share, None where it adds
    nothing; the pool's reading), its help and a float's digits."""
    metric: str
    kind: str
    read: Callable[[Any], Any]
    help: str = ""
    decimals: int | None = None

    def lines(self, total, count: int = 0) -> list[str]:
        """The row's exposition, from its sum (and count) or its reading."""
        kind = {"summary": "summary", "mean": "gauge"}.get(self.kind, self.kind)
        head = ([f"# HELP {self.metric} {self.help}"] if self.help else []) + [f"# TYPE {self.metric} {kind}"]
        if self.kind == "summary":
            return head + [f"{self.metric}_sum {total:.{self.decimals}f}", f"{self.metric}_count {count}"]
        value = total / count if self.kind == "mean" and count else 0.0 if self.kind == "mean" else total
        return head + [f"{self.metric} {value:.{self.decimals}f}" if self.decimals is not None
                       else f"{self.metric} {value}"]


COMPLETIONS = (   # what each answered generation adds: read(completion)
    Row("shimmy_prompt_tokens_total", "counter", lambda c: c.prompt_tokens),
    Row("shimmy_prompt_tokens_cached_total", "counter", lambda c: c.cached_tokens,
        "Prompt tokens reused from the KV cache."),
    Row("shimmy_generated_tokens_total", "counter", lambda c: c.completion_tokens),
    Row("shimmy_time_to_first_token_seconds", "summary", lambda c: c.ttft_s if c.completion_tokens else None,
        "Request to first sampled token.", 6),
    Row("shimmy_decode_tokens_per_second", "mean", lambda c: c.tokens_per_s or None,
        "Mean per-request decode speed.", 3),
)
POOL = (          # the pool of resident models: read(pool)
    Row("shimmy_model_loads_total", "counter", lambda p: p.stats.loads, "Models loaded (on demand or at start)."),
    Row("shimmy_model_unloads_total", "counter", lambda p: p.stats.unloads),
    Row("shimmy_model_load_seconds_total", "counter", lambda p: p.stats.load_seconds, decimals=3),
    Row("shimmy_models_resident", "gauge", lambda p: len(p.residents)),
)


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()   # (route, status) -> count
        self.sums = {row.metric: 0 for row in COMPLETIONS}
        self.counts = {row.metric: 0 for row in COMPLETIONS}

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def completion(self, c) -> None:
        with self._lock:
            for row in COMPLETIONS:
                value = row.read(c)
                if value is not None:
                    self.sums[row.metric] += value
                    self.counts[row.metric] += 1

    def render(self, device_bytes: dict[str, int], engine=None, restarts: int = 0, pool=None, stalls: int = 0,
               experts: dict | None = None) -> str:
        """The exposition text; `engine` holds the engines' figures summed
        (worker/figures.py; None while no model has reported any);
        `restarts` counts the model workers' crashes, `stalls` the times a
        watchdog found one making no progress."""
        # read before this lock: the pool takes its own
        predicted = [(e["name"], e["predicted"]) for e in pool.snapshot() if e.get("predicted")] if pool else []
        with self._lock:
            lines = ["# HELP shimmy_requests_total HTTP requests by route and status.",
                     "# TYPE shimmy_requests_total counter"]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'shimmy_requests_total{{route="{route}",status="{status}"}} {n}')
            errors = sum(n for (_, status), n in self.requests.items() if status >= 400)
            lines += Row("shimmy_errors_total", "counter", None, "Requests answered with a 4xx or 5xx status.") \
                .lines(errors)
            for row in COMPLETIONS:
                lines += row.lines(self.sums[row.metric], self.counts[row.metric])
        lines += ["# HELP shimmy_placement_bytes Planned weight bytes per device.",
                  "# TYPE shimmy_placement_bytes gauge"]
        lines += [f'shimmy_placement_bytes{{device="{d}"}} {b}' for d, b in sorted(device_bytes.items())]
        lines += Row("shimmy_worker_restarts_total", "counter", None,
                     "Model worker restarts after it died (a native crash).").lines(restarts)
        lines += Row("shimmy_worker_stalls_total", "counter", None,
                     "Times a model worker made no progress within --watchdog.").lines(stalls)
        if pool is not None:
            for row in POOL:
                lines += row.lines(row.read(pool))
            lines += _predicted(predicted)
        lines += exposition(engine or {})
        lines += _experts(experts or {})
        return "\n".join(lines) + "\n"


def _predicted(predicted: list) -> list[str]:
    if not predicted:
        return []
    return ["# HELP shimmy_predicted_decode_tokens_per_second Decode speed the cost model predicts for a resident "
            "model's plan (plan --predict; docs/STREAMING.md), beside shimmy_decode_tokens_per_second measured.",
            "# TYPE shimmy_predicted_decode_tokens_per_second gauge"] + \
        [f'shimmy_predicted_decode_tokens_per_second{{model="{_label(name)}"}} {p["decode_tps"]:.3f}'
         for name, p in predicted]


def _experts(experts: dict) -> list[str]:
    if not experts:
        return []
    return ["# HELP shimmy_expert_selections_total Routed-expert choices per model, MoE layer and expert, of tokens "
            "whose logits were computed (generated ones, a prompt's last; the last layer routes no other), since "
            "the model's worker started (serve --trace-experts).",
            "# TYPE shimmy_expert_selections_total counter"] + \
        [f'shimmy_expert_selections_total{{model="{_label(model)}",layer="{layer}",expert="{e}"}} {n}'
         for model, layers in sorted(experts.items()) for layer, counts in sorted(layers.items())
         for e, n in enumerate(counts)]
