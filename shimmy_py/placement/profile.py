"""The machine profile: what `shimmy-py calibrate` (calibrate.py) measured on
this machine, a small JSON in the cache folder, read by the cost model
(predict.py), `plan --predict`, `bench` and the server's workers."""
from __future__ import annotations

import json
from pathlib import Path

from ..native.install import cache_dir

VERSION = 3            # the fields predict.py reads; an older file is as none


def per_threads(profile: dict, key: str, threads: int | None):
    """A figure measured per thread count: the one for `threads` (default:
    the profile's own), else the nearest measured below it, else the least."""
    table = {int(k): v for k, v in profile[key].items()}
    want = threads or profile.get("threads") or max(table)
    below = [t for t in table if t <= want]
    return table[max(below)] if below else table[min(table)]


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
