"""Speculative decoding's modes as one registry (generation/spec_modes.py):
every --spec-type name, alias and rule of the options is its class's, and what a mode needs of a model is
checked by the class alone (no libllama: a header stands in)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from shimmy_py.errors import GenerationError, ShimmyError
from shimmy_py.generation.options import ModelOptions
from shimmy_py.generation.spec_modes import MODES, Mode, SpeculativeOptions, mode_of


def header(arch: str, nextn: int = 0):
    return SimpleNamespace(architecture=arch, arch_key=lambda k, d=None: nextn if k == "nextn_predict_layers" else d)


def test_a_modes_names_and_what_it_asks_of_the_options_are_its_class(monkeypatch):
    for mode in MODES.values():
        for alias in (mode.name, *mode.aliases):
            assert mode_of(SpeculativeOptions(alias, **({"draft_model": "d.gguf"} if mode.name == "draft-simple"
                                                        else {}))) is mode
    assert SpeculativeOptions(draft_model="d.gguf").spec_type == "draft-simple"     # Off.meant
    with pytest.raises(ShimmyError, match="needs a draft model"):
        SpeculativeOptions("draft-simple")
    with pytest.raises(ShimmyError, match="use draft-simple"):
        SpeculativeOptions("ngram-simple", draft_model="d.gguf")
    assert not SpeculativeOptions().on and SpeculativeOptions("ngram").on

    class Toy(Mode):                                  # a new mode is a class in the registry, nothing else
        name, aliases = "toy", ("t",)
    monkeypatch.setitem(MODES, "toy", Toy())
    assert mode_of(SpeculativeOptions("t")).name == "toy" and SpeculativeOptions("toy").on
    with pytest.raises(ShimmyError, match="choose one of none, ngram-simple, draft-simple, draft-mtp, toy"):
        SpeculativeOptions("nope")


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
