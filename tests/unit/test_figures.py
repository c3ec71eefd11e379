"""The engine's figures as one table (serving/worker/figures.py): what a
worker reads, what the supervisor carries over restarts and what /metrics
renders all come from its rows."""
from __future__ import annotations

from types import SimpleNamespace

from shimmy_py.serving.models.metrics import Metrics
from shimmy_py.serving.worker.figures import COUNTERS, FIGURES, exposition, read_all

STATS = SimpleNamespace(queue_depth=2, active=3, steps=40, threads=2, step_s=1.5, decode_s=1.25, batch_tokens=99,
                        shared_tokens=7, draft_tokens=11, draft_accepted=5,
                        stream=SimpleNamespace(routed=30, missed=12, bytes_read=3 << 20, tokens=4))
CACHE = SimpleNamespace(bytes=1024, hits=4, saves=6)


def test_a_worker_reads_every_row():
    values = read_all(STATS, CACHE)
    assert set(values) == {f.key for f in FIGURES}
    assert values["cache_ram_bytes"] == 1024 and values["draft_accepted"] == 5
    assert values["stream_missed"] == 12 and values["stream_file_bytes"] == 3 << 20
    assert read_all(SimpleNamespace(**{**vars(STATS), "stream": None}), CACHE)["stream_routed"] == 0  # nothing streams


def test_counters_are_the_rows_marked_so():
    assert {"steps", "step_s", "decode_s", "batch_tokens", "cache_ram_hits", "draft_tokens"} <= set(COUNTERS)
    assert not {"queue_depth", "active", "threads", "cache_ram_bytes"} & set(COUNTERS)


def test_metrics_render_each_exported_row_once_with_its_type():
    text = Metrics().render({}, read_all(STATS, CACHE))
    for f in FIGURES:
        if f.metric is None:
            continue
        samples = [line for line in text.splitlines() if line.split(" ")[0] == f.metric]
        assert len(samples) == 1, f.metric
        assert f"# TYPE {f.metric} {'counter' if f.counter else 'gauge'}" in text
    assert "shimmy_engine_decode_seconds_total 1.250000" in text and "shimmy_queue_depth 2" in text


def test_a_new_row_is_all_it_takes(monkeypatch):
    from shimmy_py.serving.worker import figures
    row = figures.Figure("spec_rounds", lambda s, c: 9, True, "shimmy_spec_rounds_total", "Rounds.")
    monkeypatch.setattr(figures, "FIGURES", (*figures.FIGURES, row))
    assert "shimmy_spec_rounds_total 9" in exposition(figures.read_all(STATS, CACHE))
