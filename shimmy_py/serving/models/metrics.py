"""Server counters, rendered in Prometheus' text exposition format."""
from __future__ import annotations

import threading
from collections import Counter

from ..worker.figures import exposition


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()   # (route, status) -> count
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.generated_tokens = 0
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.decode_tps_sum = 0.0
        self.decode_tps_count = 0

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def completion(self, c) -> None:
        with self._lock:
            self.prompt_tokens += c.prompt_tokens
            self.cached_tokens += c.cached_tokens
            self.generated_tokens += c.completion_tokens
            if c.completion_tokens:
                self.ttft_sum += c.ttft_s
                self.ttft_count += 1
            if c.tokens_per_s:
                self.decode_tps_sum += c.tokens_per_s
                self.decode_tps_count += 1

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
            mean_tps = self.decode_tps_sum / self.decode_tps_count if self.decode_tps_count else 0.0
            lines += [
                "# HELP shimmy_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE shimmy_errors_total counter", f"shimmy_errors_total {errors}",
                "# TYPE shimmy_prompt_tokens_total counter", f"shimmy_prompt_tokens_total {self.prompt_tokens}",
                "# HELP shimmy_prompt_tokens_cached_total Prompt tokens reused from the KV cache.",
                "# TYPE shimmy_prompt_tokens_cached_total counter",
                f"shimmy_prompt_tokens_cached_total {self.cached_tokens}",
                "# TYPE shimmy_generated_tokens_total counter",
                f"shimmy_generated_tokens_total {self.generated_tokens}",
                "# HELP shimmy_time_to_first_token_seconds Request to first sampled token.",
                "# TYPE shimmy_time_to_first_token_seconds summary",
                f"shimmy_time_to_first_token_seconds_sum {self.ttft_sum:.6f}",
                f"shimmy_time_to_first_token_seconds_count {self.ttft_count}",
                "# HELP shimmy_decode_tokens_per_second Mean per-request decode speed.",
                "# TYPE shimmy_decode_tokens_per_second gauge",
                f"shimmy_decode_tokens_per_second {mean_tps:.3f}",
                "# HELP shimmy_placement_bytes Planned weight bytes per device.",
                "# TYPE shimmy_placement_bytes gauge"]
            lines += [f'shimmy_placement_bytes{{device="{d}"}} {b}' for d, b in sorted(device_bytes.items())]
            lines += ["# HELP shimmy_worker_restarts_total Model worker restarts after it died (a native crash).",
                      "# TYPE shimmy_worker_restarts_total counter", f"shimmy_worker_restarts_total {restarts}",
                      "# HELP shimmy_worker_stalls_total Times a model worker made no progress within --watchdog.",
                      "# TYPE shimmy_worker_stalls_total counter", f"shimmy_worker_stalls_total {stalls}"]
            if pool is not None:
                st = pool.stats
                lines += ["# HELP shimmy_model_loads_total Models loaded (on demand or at start).",
                          "# TYPE shimmy_model_loads_total counter", f"shimmy_model_loads_total {st.loads}",
                          "# TYPE shimmy_model_unloads_total counter", f"shimmy_model_unloads_total {st.unloads}",
                          "# TYPE shimmy_model_load_seconds_total counter",
                          f"shimmy_model_load_seconds_total {st.load_seconds:.3f}",
                          "# TYPE shimmy_models_resident gauge", f"shimmy_models_resident {len(pool.residents)}"]
                if predicted:
                    lines += ["# HELP shimmy_predicted_decode_tokens_per_second Decode speed the cost model "
                              "predicts for a resident model's plan (plan --predict; docs/STREAMING.md), beside "
                              "shimmy_decode_tokens_per_second measured.",
                              "# TYPE shimmy_predicted_decode_tokens_per_second gauge"]
                    lines += [f'shimmy_predicted_decode_tokens_per_second{{model="{_label(name)}"}} '
                              f'{p["decode_tps"]:.3f}' for name, p in predicted]
            lines += exposition(engine or {})
            if experts:
                lines += ["# HELP shimmy_expert_selections_total Routed-expert choices per model, MoE layer and "
                          "expert, of tokens whose logits were computed (generated ones, a prompt's last; the "
                          "last layer routes no other), since the model's worker started (serve --trace-experts).",
                          "# TYPE shimmy_expert_selections_total counter"]
                lines += [f'shimmy_expert_selections_total{{model="{_label(model)}",layer="{layer}",'
                          f'expert="{e}"}} {n}'
                          for model, layers in sorted(experts.items()) for layer, counts in sorted(layers.items())
                          for e, n in enumerate(counts)]
        return "\n".join(lines) + "\n"
