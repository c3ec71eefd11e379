"""Shared fixtures: the tiny synthetic model, written once per test session
(and under other names, hard-linked), the model loaded from it, and
llama.cpp's ggml-rpc-server as a second device.

Tests under tests/unit need no native build (pure Python: planner, tensor
table, request parsing, names, KV bookkeeping, ...); every other test is
marked `native` here, so `pytest -m "not native"` runs the pure ones alone
(`make test-fast`). The heavy modules (every family against llama.cpp's
tools, chat templates against llama-server, several models in one server,
killed workers, hostile clients, several devices) are also marked `slow`:
`pytest -m "not slow"` is the middle tier (`make test-mid`).
"""
from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from shimmy_py import Model, synth

UNIT = Path(__file__).parent / "unit"
SLOW = {"test_families", "test_chat_templates", "test_model_pool", "test_worker_crash", "test_server_hardening",
        "test_serve_config",
        "test_tokenizer_runs", "test_speculative",
        "test_multi_device", "test_quantized"}


def pytest_collection_modifyitems(items):
    for item in items:
        if UNIT not in Path(item.fspath).parents:
            item.add_marker(pytest.mark.native)
        if Path(item.fspath).stem in SLOW:
            item.add_marker(pytest.mark.slow)



# litellm fetches its model cost map from the internet when imported, retrying for seconds (no network
# here, and a test reaches nothing outside the machine): its bundled copy instead
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def collected():
    """Connections a test left to the collector (client libraries' pools)
    are finalized after it, not whenever the collector runs: a ResourceWarning
    raised inside a later ast.parse makes pytest parse source for its report
    within that parse, which CPython 3.11 reports as "AST constructor
    recursion depth mismatch". What survives is frozen (gc.freeze), so the
    next collection walks only the objects made since: with the client
    libraries imported a full collection walks some 6 million objects (0.3 s,
    after every test), the frozen one what one test made."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return synth.write(tmp_path_factory.mktemp("models") / "tiny.gguf", "tiny", seed=1)


@pytest.fixture(scope="session")
def tiny_named(tmp_path_factory, tiny_path):
    """The tiny model under another file name (a hard link: no second write),
    e.g. tiny_named("deepseek-moe-16b-f16.gguf") for the model card's name."""
    def link(name: str) -> Path:
        path = tmp_path_factory.mktemp("named") / name
        os.link(tiny_path, path)
        return path
    return link


@pytest.fixture(scope="session")
def model(tiny_path):
    from support.batch_noise import EXACT
    with Model(tiny_path, n_ctx=512, n_threads=2, **EXACT) as m:
        yield m


@pytest.fixture(scope="session")
def vocab_model():
    with Model(synth.vocab_path(), vocab_only=True) as m:
        yield m


@pytest.fixture(scope="session")
def rpc():
    from support.rpc import RPCServer
    with RPCServer() as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def ds16b_path(tmp_path_factory):
    """DeepSeekMoE 16B's real shapes, shape-only (sparse: nothing is stored)."""
    return synth.write(tmp_path_factory.mktemp("models") / "deepseek-moe-16b-f16.gguf",
                       "deepseek-moe-16b", shape_only=True)
