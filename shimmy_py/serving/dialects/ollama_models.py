"""Ollama's model routes: /api/tags (the models this server can run),
/api/show (one model's details, metadata and chat template, from its GGUF
header), /api/ps (resident models with Ollama's fields beside shimmy's)
and /api/version. Figures come from the file and the plans: `size` in
/api/ps is what the model's plan places (weights, KV cache, reserve), and
`size_vram` the part on accelerators."""
from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

from ...errors import NotFound
from ...gguf_io.reader import read_header
from ...version import __version__
from ..http.app import App
from ..http.errors import ApiError
from ..http.exchange import Request, Response
from .known import known_fields

_BLOB = re.compile(r"^sha256-([0-9a-f]{64})$")


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def parameter_size(n: int | None) -> str:
    """As Ollama writes it: 16.4B, 494.0M."""
    if not n:
        return ""
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def details(app: App, path: Path) -> dict:
    d = app.state.catalog.describe(path)
    arch = d.architecture if d else ""
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch] if arch else [],
            "parameter_size": parameter_size(d.params if d else None),
            "quantization_level": d.quantization if d else ""}


def digest(path: Path) -> dict:
    """An Ollama-store blob's digest (its file name); other files have none
    (hashing a many-GB file for a listing would cost minutes)."""
    m = _BLOB.match(path.name)
    return {"digest": m.group(1)} if m else {}


def tags(app: App, req: Request) -> Response:
    models = []
    for name, path in sorted(app.state.catalog.items()):
        try:
            st = path.stat()
        except OSError:                   # gone since discovery: not listed
            continue
        models.append({"name": name, "model": name, "modified_at": iso(st.st_mtime), "size": st.st_size,
                       **digest(path), "details": details(app, path)})
    return Response.json(200, {"models": models})


def show(app: App, req: Request) -> Response:
    body = known_fields(req.json(), {"model", "name", "verbose"}, route="/api/show")
    requested = body.get("model") or body.get("name")
    if not isinstance(requested, str) or not requested:
        raise ApiError(400, "'model' is required")
    name = app.state.catalog.resolve(requested)
    path = app.state.catalog.get(name)
    if path is None or not path.exists():
        raise NotFound(f"model {requested!r} not found")
    app.state.catalog.check_file(name)
    meta = read_header(path).metadata
    template = meta.get("tokenizer.chat_template", "")
    info: dict[str, Any] = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))
                            and (not k.startswith("tokenizer.") or k in ("tokenizer.ggml.model", "tokenizer.ggml.pre"))
                            and k != "tokenizer.chat_template"}
    d = app.state.catalog.describe(path)
    if d:
        info["general.parameter_count"] = d.params
    caps = ["completion"]
    if isinstance(template, str) and "tools" in template:
        caps.append("tools")
    if isinstance(template, str) and ("<think>" in template or "<|channel|>" in template):
        caps.append("thinking")
    return Response.json(200, {"license": "", "modelfile": "", "parameters": "", "template": template,
                               "details": details(app, path), "model_info": info, "capabilities": caps,
                               "modified_at": iso(path.stat().st_mtime)})


def ps(app: App, req: Request) -> Response:
    """Ollama's fields (model, size and size_vram in bytes, expires_at,
    details, context_length) beside shimmy's (devices and planned_bytes:
    bytes per device; idle_s, ...)."""
    out = []
    for entry in app.state.pool.snapshot():
        path = app.state.catalog.get(entry["name"])
        devices = entry.get("devices") or {}
        vram = sum(b for dev, b in devices.items() if not dev.upper().startswith("CPU"))
        expires = entry.get("expires_at")
        planned = entry.get("planned_bytes") or devices        # bytes per device: shimmy's keys
        out.append({**entry, "model": entry["name"], "size": sum(planned.values()),   # Ollama's: an integer
                    "size_vram": vram, "expires_at": iso(expires) if expires is not None else None,
                    **(digest(path) if path else {}), "details": details(app, path) if path else {},
                    "context_length": entry.get("context_length")})
    return Response.json(200, {"models": out})


def version(app: App, req: Request) -> Response:
    return Response.json(200, {"version": __version__})
