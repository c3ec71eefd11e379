"""Shared fixtures: the tiny synthetic model, written once per test session."""
from __future__ import annotations

import pytest

from shimmy_py import Model, synth


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return synth.write(tmp_path_factory.mktemp("models") / "tiny.gguf", "tiny", seed=1)


@pytest.fixture(scope="session")
def model(tiny_path):
    with Model(tiny_path, n_ctx=512, n_threads=2) as m:
        yield m


@pytest.fixture(scope="session")
def vocab_model():
    with Model(synth.vocab_path(), vocab_only=True) as m:
        yield m
