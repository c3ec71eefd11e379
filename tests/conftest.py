"""Shared fixtures: the tiny synthetic model, written once per test session.

Tests under tests/unit need no native build (pure Python: planner, tensor
table, request parsing, names, KV bookkeeping, ...); every other test is
marked `native` here, so `pytest -m "not native"` runs the pure ones alone.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from shimmy_py import Model, synth

UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items):
    for item in items:
        if UNIT not in Path(item.fspath).parents:
            item.add_marker(pytest.mark.native)



@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return synth.write(tmp_path_factory.mktemp("models") / "tiny.gguf", "tiny", seed=1)


@pytest.fixture(scope="session")
def model(tiny_path):
    from batch_noise import EXACT
    with Model(tiny_path, n_ctx=512, n_threads=2, **EXACT) as m:
        yield m


@pytest.fixture(scope="session")
def vocab_model():
    with Model(synth.vocab_path(), vocab_only=True) as m:
        yield m


@pytest.fixture(scope="session")
def rpc():
    from rpc_server import RPCServer
    with RPCServer() as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def ds16b_path(tmp_path_factory):
    """DeepSeekMoE 16B's real shapes, shape-only (sparse: nothing is stored)."""
    return synth.write(tmp_path_factory.mktemp("models") / "deepseek-moe-16b-f16.gguf",
                       "deepseek-moe-16b", shape_only=True)
