"""The machine profile: what `shimmy-py calibrate` (calibrate.py) measured on
this machine, a small JSON in the cache folder, read by the cost model
(predict.py), `plan --predict`, `bench` and the server's workers."""
from __future__ import annotations

import json
from pathlib import Path

from ..native.install import cache_dir

VERSION = 2            # the fields predict.py reads; an older file is as none


def profile_path() -> Path:
    return cache_dir() / "machine.json"


def load_profile(path: Path | None = None) -> dict | None:
    """The saved machine profile, or None when this machine was never calibrated."""
    path = path or profile_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None
