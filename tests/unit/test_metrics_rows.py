"""/metrics from its tables (serving/models/metrics.py): every row renders
once with its type, a completion adds to the rows it counts, and a figure
added as a row appears with nothing else changed. Pure: a fake pool."""
from __future__ import annotations

from types import SimpleNamespace

from shimmy_py.generation.loop import Completion
from shimmy_py.serving.models import metrics
from shimmy_py.serving.models.metrics import COMPLETIONS, POOL, Metrics, Row
from shimmy_py.serving.worker.figures import FIGURES


class Pool:
    stats = SimpleNamespace(loads=3, unloads=1, load_seconds=2.5)
    residents = {"a": None}

    def snapshot(self):
        return [{"name": "a", "predicted": {"decode_tps": 12.5}}]


def _value(text: str, name: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.split()[0] == name)


def test_every_row_renders_once_with_its_type():
    text = Metrics().render({"CPU": 7}, pool=Pool())
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    for name in [r.metric for r in (*COMPLETIONS, *POOL)] + [f.metric for f in FIGURES if f.metric]:
        assert name in types, name
    assert _value(text, "shimmy_model_loads_total") == "3" and _value(text, "shimmy_models_resident") == "1"
    assert _value(text, 'shimmy_predicted_decode_tokens_per_second{model="a"}') == "12.500"


def test_completions_add_to_their_rows():
    m = Metrics()
    m.completion(Completion(prompt_tokens=5, cached_tokens=2, completion_tokens=3, ttft_s=0.5, tokens_per_s=10.0))
    m.completion(Completion(prompt_tokens=4, completion_tokens=1, ttft_s=0.25))      # one token: no decode speed
    m.completion(Completion(prompt_tokens=6))                                         # nothing generated: no TTFT
    text = m.render({})
    assert _value(text, "shimmy_prompt_tokens_total") == "15" and _value(text, "shimmy_generated_tokens_total") == "4"
    assert _value(text, "shimmy_time_to_first_token_seconds_sum") == "0.750000"
    assert _value(text, "shimmy_time_to_first_token_seconds_count") == "2"
    assert _value(text, "shimmy_decode_tokens_per_second") == "10.000"


def test_a_new_figure_is_a_row(monkeypatch):
    monkeypatch.setattr(metrics, "COMPLETIONS", (*COMPLETIONS, Row("shimmy_stop_words_total", "counter",
                                                                   lambda c: int(bool(c.stop_word)), "Stops.")))
    m = Metrics()
    m.completion(Completion(stop_word="END"))
    text = m.render({})
    assert "# TYPE shimmy_stop_words_total counter" in text and _value(text, "shimmy_stop_words_total") == "1"
