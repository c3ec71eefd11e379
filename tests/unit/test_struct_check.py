"""The struct check compares ctypes layouts with a probe's output; this runs
it on probe output derived from the binding, without a native build."""
import pytest

from shimmy_py.errors import NativeError
from shimmy_py.native import layout
from shimmy_py.native.binding import STRUCTS, llama_context_params


def probed():
    return {s.__name__: layout.ctypes_layout(s) for s in STRUCTS}


def test_identical_layouts_pass():
    assert layout.mismatches(STRUCTS, probed()) == []


def test_a_moved_field_and_a_missing_one_are_named():
    p = probed()
    p["llama_context_params"]["size"] += 8
    p["llama_context_params"]["fields"]["n_batch"] += 4
    del p["llama_batch"]["fields"]["logits"]
    problems = layout.mismatches(STRUCTS, p)
    assert any("sizeof" in x for x in problems)
    assert any("llama_context_params.n_batch" in x for x in problems)
    assert any("llama_batch: fields differ (logits)" in x for x in problems)


def test_missing_probe_output_is_an_error(tmp_path):
    with pytest.raises(NativeError, match="missing"):
        layout.verify((llama_context_params,), tmp_path / "layout.json", "x")
