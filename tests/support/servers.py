"""Server configurations for tests: port 0 (a free one), two decoding
threads, and with `exact` the context the batch comparisons run under
(batch_noise.EXACT: F32 KV cache, flash attention off)."""
from __future__ import annotations

from pathlib import Path

from shimmy_py.generation.options import ModelOptions
from shimmy_py.serving.config import ServeConfig
from support.batch_noise import EXACT


def config(path, exact: bool = False, threads: int = 2, model: ModelOptions | None = None, **kw) -> ServeConfig:
    """ServeConfig for `path` (None: models on demand from known_paths);
    `model`: the ModelOptions instead of two threads (and EXACT)."""
    if model is None:
        model = ModelOptions.build(n_threads=threads, **(EXACT if exact else {}))
    return ServeConfig(Path(path) if path is not None else None, port=kw.pop("port", 0), model=model, **kw)


def options(exact: bool = False, threads: int = 2, **kw) -> ModelOptions:
    """ModelOptions as the test servers load with, plus Model's keywords `kw`."""
    return ModelOptions.build(n_threads=threads, **(EXACT if exact else {}), **kw)
