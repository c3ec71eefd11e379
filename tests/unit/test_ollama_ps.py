"""/api/ps as the official `ollama` client parses it: Ollama's `size` and
`size_vram` are integers of bytes; shimmy's bytes per device stay under keys
of its own. A model admitted within a memory budget carries its plan's bytes
per device (`planned_bytes`, a dict), which once went out as `size` and made
`ollama.Client().ps()` raise a ValidationError. Run on the handler with a
stand-in state: no model, no server."""
from __future__ import annotations

import json
from types import SimpleNamespace

import ollama

from shimmy_py.serving.dialects import ollama_models
from shimmy_py.serving.http.exchange import Request


def ps_body(entry: dict) -> dict:
    pool = SimpleNamespace(snapshot=lambda: [entry])
    app = SimpleNamespace(state=SimpleNamespace(pool=pool, catalog={}))
    req = Request("GET", "/api/ps", {}, lambda: b"")
    return json.loads(ollama_models.ps(app, req).body)


def test_a_budgeted_model_has_integer_sizes_and_its_devices_apart():
    entry = {"name": "tiny", "size_bytes": 90_000_000, "devices": {"CPU": 81_682_560, "RPC0": 1_000},
             "planned_bytes": {"CPU": 81_682_560, "RPC0": 2_000_000}, "expires_at": 1_800_000_000.0,
             "context_length": 2048}
    body = ps_body(entry)
    [m] = body["models"]
    assert m["size"] == 81_682_560 + 2_000_000 and m["size_vram"] == 1_000
    assert m["planned_bytes"] == {"CPU": 81_682_560, "RPC0": 2_000_000}      # shimmy's per-device figures
    [parsed] = ollama.ProcessResponse(**body).models                           # the client's own model
    assert (parsed.model, parsed.size, parsed.size_vram, parsed.context_length) == ("tiny", 83_682_560, 1_000, 2048)


def test_a_model_loaded_without_a_budget_counts_what_its_devices_hold():
    body = ps_body({"name": "tiny", "devices": {"CPU": 5_000}, "planned_bytes": {}, "expires_at": None})
    [parsed] = ollama.ProcessResponse(**body).models
    assert parsed.size == 5_000 and parsed.size_vram == 0 and parsed.expires_at is None
