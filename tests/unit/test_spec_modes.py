"""Speculative decoding's modes as one registry (generation/spec_modes.py):
every --spec-type name has its class, and what a mode needs of a model is
checked by the class alone (no libllama: a header stands in)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from shimmy_py.errors import GenerationError
from shimmy_py.generation.options import ModelOptions
from shimmy_py.generation.spec_modes import MODES, mode_of
from shimmy_py.generation.speculative import SPEC_TYPES, SpeculativeOptions


def header(arch: str, nextn: int = 0):
    return SimpleNamespace(architecture=arch, arch_key=lambda k, d=None: nextn if k == "nextn_predict_layers" else d)


def test_every_spec_type_is_a_mode():
    assert tuple(MODES) == SPEC_TYPES
    assert mode_of(SpeculativeOptions("ngram")).name == "ngram-simple"


def test_only_the_mtp_mode_plans_the_nextn_block():
    assert [name for name, m in MODES.items() if m.nextn] == ["draft-mtp"]
    assert ModelOptions.build(speculative="draft-mtp").placement.mtp
    assert not ModelOptions.build(speculative="ngram-simple").placement.mtp


def test_what_a_mode_needs_of_the_model_is_its_own_check():
    mtp = SpeculativeOptions("draft-mtp")
    with pytest.raises(GenerationError, match="has none"):
        MODES["draft-mtp"].check(header("deepseek2"), "m.gguf", mtp)
    MODES["draft-mtp"].check(header("deepseek2", nextn=1), "m.gguf", mtp)
    with pytest.raises(GenerationError, match="recurrent state"):            # any mode on a hybrid
        MODES["ngram-simple"].check(header("qwen3next"), "m.gguf", SpeculativeOptions("ngram-simple"))
    MODES["none"].check(header("qwen3next"), "m.gguf", SpeculativeOptions())   # but none
    with pytest.raises(GenerationError, match="needs the model loaded with it"):
        MODES["draft-mtp"].drafter(None, None, mtp)
