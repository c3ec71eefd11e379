"""Per-model settings for `serve --config FILE` (TOML or JSON): the MoE
placement knobs people ask for per model, the context and keep_alive.

    [models."qwen3-30b-a3b"]
    n_cpu_moe = 20
    ctx = 8192

    [models."deepseek-moe-16b"]
    cpu_moe = true
    keep_alive = "30m"

A model is named as the server answers to it (any of its names). The keys
are the ModelOptions' (and PlacementOptions') --config keys (fields.py:
strategy or llama.cpp's cpu_moe / n_cpu_moe / fit / vram_budget, overrides,
rpc, host_ram, device_capacity, kv_type, flash_attn, load_mode, threads,
measure_reserve) plus ctx, parallel and keep_alive. Each key given replaces
the server's value of that setting (the strategy keys together replace its
strategy); every value is parsed when the file is read, into the very
records a worker loads with, so a wrong one is an error naming model and key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import ShimmyError
from ...fields import config_keys, from_mapping
from ...generation.options import ModelOptions
from ..config import ctx_value, parallel_value
from ..durations import parse_duration

MAX_FILE = 256 << 10           # bytes of a settings file
MAX_MODELS = 1000              # models it names
MAX_KEY_PARTS = 16             # dotted parts (or brackets) of one key
SERVE_KEYS = {"ctx": ctx_value, "parallel": parallel_value, "keep_alive": parse_duration}   # bounded as the flags


@dataclass(frozen=True)
class ModelSettings:
    model: ModelOptions | None = None   # None: the server's own options (and its --model's plan)
    ctx: int | None = None
    parallel: int | None = None
    keep_alive: float | None = None


def read(path: str | Path) -> dict:
    """The file's [models] table, parsed as TOML or JSON."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE:
            raise ShimmyError(f"--config {path}: larger than {MAX_FILE >> 10} KiB; a settings file is a few lines")
        text = path.read_text()
        _check_depth(path, text)
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
    except RecursionError:
        raise ShimmyError(f"--config {path}: nested too deeply") from None
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise ShimmyError(f"--config {path}: expected a [models] table of model names")
    if len(models) > MAX_MODELS:
        raise ShimmyError(f"--config {path}: {len(models)} models; at most {MAX_MODELS}")
    seen: dict[str, str] = {}
    for name in models:
        if name.lower() in seen:     # names are case-insensitive: one would silently win
            raise ShimmyError(f"--config {path}: models {seen[name.lower()]!r} and {name!r} are the same model")
        seen[name.lower()] = name
    return models


def _check_depth(path: Path, text: str) -> None:
    """A key of many dotted parts made Python's TOML reader take minutes
    (200,000 parts hung start-up): refused before it parses."""
    for number, line in enumerate(text.splitlines(), 1):
        key = line.split("=", 1)[0]
        if key.count(".") > MAX_KEY_PARTS or line.count("[") > MAX_KEY_PARTS:
            raise ShimmyError(f"--config {path}:{number}: a key nested deeper than {MAX_KEY_PARTS} levels")


def load(path: str | Path, base: ModelOptions = ModelOptions()) -> dict[str, ModelSettings]:
    """Settings per model name (lowercased), over the server's options `base`."""
    path = Path(path)
    known = sorted({*SERVE_KEYS, *config_keys(ModelOptions)})
    out = {}
    for name, table in read(path).items():
        where = f"--config: model {name!r}"
        if not isinstance(table, dict):
            raise ShimmyError(f"--config {path}: models.{name} must be a table of settings")
        unknown = sorted(k for k in table if k not in known)
        if unknown:
            raise ShimmyError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(known)}")
        own = {}
        for key, parse in SERVE_KEYS.items():
            if key in table:
                try:
                    own[key] = parse(table[key])
                except (ShimmyError, ValueError) as e:
                    raise ShimmyError(f"{where}: {key} = {table[key]!r}: {e}") from None
        options = {k: v for k, v in table.items() if k not in SERVE_KEYS}
        model = from_mapping(ModelOptions, options, where, base=base) if options else None
        out[name.lower()] = ModelSettings(model, **own)
    return out
