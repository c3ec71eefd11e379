"""Per-model settings for `serve --config FILE` (TOML or JSON): the MoE
placement knobs people ask for per model, and the context.

    [models."qwen3-30b-a3b"]
    n_cpu_moe = 20
    ctx = 8192

    [models."deepseek-moe-16b"]
    cpu_moe = true
    keep_alive = "30m"

A model is named as the server answers to it (any of its names). Every key is
checked when the file is read: a wrong one is an error naming model and key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ShimmyError
from .api import ApiError, parse_duration

PLACEMENT_KEYS = {"cpu_moe": bool, "n_cpu_moe": int, "fit": bool, "vram_budget": (str, int), "overrides": list,
                  "kv_type": str, "flash_attn": str, "device_capacity": dict}
OTHER_KEYS = {"ctx": int, "parallel": int, "keep_alive": (str, int, float)}


@dataclass(frozen=True)
class ModelSettings:
    placement: dict = field(default_factory=dict)   # Model keyword arguments
    ctx: int | None = None
    parallel: int | None = None
    keep_alive: float | None = None


def _check(model: str, key: str, value) -> None:
    kinds = {**PLACEMENT_KEYS, **OTHER_KEYS}.get(key)
    if kinds is None:
        raise ShimmyError(f"--config: model {model!r}: unknown setting {key!r}; known: "
                          f"{', '.join(sorted({**PLACEMENT_KEYS, **OTHER_KEYS}))}")
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ShimmyError(f"--config: model {model!r}: {key} must not be a boolean")
    if not isinstance(value, kinds):
        raise ShimmyError(f"--config: model {model!r}: {key} = {value!r} has the wrong type")
    if key in ("ctx", "parallel") and value < 1:
        raise ShimmyError(f"--config: model {model!r}: {key} must be >= 1, got {value}")


def load(path: str | Path) -> dict[str, ModelSettings]:
    """Settings per model name (lowercased), from a .toml or .json file."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:   # Python 3.10
                raise ShimmyError(f"--config {path}: TOML needs Python 3.11 or newer; give a .json file") from None
            raw = tomllib.loads(text)
    except OSError as e:
        raise ShimmyError(f"--config {path}: {e.strerror or e}") from None
    except ValueError as e:   # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ShimmyError(f"--config {path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {e}") from None
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise ShimmyError(f"--config {path}: expected a [models] table of model names")
    out = {}
    for name, settings in models.items():
        if not isinstance(settings, dict):
            raise ShimmyError(f"--config {path}: models.{name} must be a table of settings")
        for key, value in settings.items():
            _check(name, key, value)
        try:
            keep = parse_duration(settings["keep_alive"]) if "keep_alive" in settings else None
        except ApiError as e:
            raise ShimmyError(f"--config: model {name!r}: {e.message}") from None
        placement = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items() if k in PLACEMENT_KEYS}
        out[name.lower()] = ModelSettings(placement, settings.get("ctx"), settings.get("parallel"), keep)
    return out
