"""Placement strategies as one registry (placement/strategies.py): the
parser, the planner and their messages read it, so a new strategy is a class
there; each strategy's choice of experts, on a table built in memory."""
from __future__ import annotations

import pytest

from shimmy_py.errors import PlacementError
from shimmy_py.placement import strategies
from shimmy_py.placement.options import Strategy
from shimmy_py.placement.strategies import KINDS, USAGE, kind


def test_every_kind_parses_and_prints_as_written():
    for text in ("gpu", "cpu-moe", "n-cpu-moe=8", "fit", "fit=1073741824"):
        assert str(Strategy.parse(text)) == text
    assert set(KINDS) == {"gpu", "cpu-moe", "n-cpu-moe", "fit"}
    assert USAGE == "gpu, cpu-moe, n-cpu-moe=N, fit or fit=SIZE"
    for bad in ("gpu=1", "n-cpu-moe=x", "moe"):
        with pytest.raises(PlacementError, match=f"use {USAGE}"):
            Strategy.parse(bad)
    with pytest.raises(PlacementError, match="unknown strategy 'moe'"):
        kind("moe")


class T:     # a routed-expert tensor as the strategies see it
    def __init__(self, name, layer, nbytes):
        self.name, self.layer, self.nbytes = name, layer, nbytes


def test_each_kind_chooses_its_experts():
    movable = [T(f"blk.{i}.ffn_up_exps.weight", i, 100) for i in range(4)]
    device_of = {t.name: "GPU0" for t in movable}
    picks = {name: k.to_cpu(movable, 2, {"GPU0": 250}, device_of) for name, k in KINDS.items()}
    assert picks["gpu"] == set() and picks["cpu-moe"] == {t.name for t in movable}
    assert picks["n-cpu-moe"] == {"blk.0.ffn_up_exps.weight", "blk.1.ffn_up_exps.weight"}
    assert picks["fit"] == {"blk.0.ffn_up_exps.weight", "blk.1.ffn_up_exps.weight"}   # the last layers stay
    assert [k for k in KINDS.values() if k.budgeted] == [KINDS["fit"]]
    with pytest.raises(PlacementError, match="out of range"):
        KINDS["n-cpu-moe"].check(9, 4, "m.gguf")


def test_a_new_kind_is_one_class(monkeypatch):
    class Odd(strategies.Kind):
        name = usage = "odd-layers"

        def to_cpu(self, movable, n_cpu_moe, budgets, device_of):
            return {t.name for t in movable if t.layer % 2}
    monkeypatch.setitem(strategies.KINDS, "odd-layers", Odd())
    assert str(Strategy.parse("odd-layers")) == "odd-layers"
