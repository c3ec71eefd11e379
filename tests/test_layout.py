"""The ctypes structs match the C compiler's layout of the same headers."""
import json

import pytest

from shimmy_py.errors import NativeError
from shimmy_py.native import install as native
from shimmy_py.native import layout as _layout
from shimmy_py.native import runtime as _runtime
from shimmy_py.native.binding import STRUCTS


def test_every_struct_matches_the_probe():
    _runtime.lib()  # loading verifies too; this states it explicitly
    probed = json.loads((native.lib_dir() / "layout.json").read_text())
    assert {s.__name__ for s in STRUCTS} <= set(probed)
    assert _layout.mismatches(STRUCTS, probed) == []


def test_a_moved_field_is_a_clear_error_naming_both_versions(tmp_path):
    probed = json.loads((native.lib_dir() / "layout.json").read_text())
    probed["llama_context_params"]["size"] += 8
    probed["llama_context_params"]["fields"]["n_batch"] += 4
    bad = tmp_path / "layout.json"
    bad.write_text(json.dumps(probed))
    with pytest.raises(NativeError) as e:
        _layout.verify(STRUCTS, bad, "llama.cpp from elsewhere")
    msg = str(e.value)
    assert "llama.cpp from elsewhere" in msg and "llama-cpp-python==0.3.36" in msg
    assert "llama_context_params.n_batch" in msg and "sizeof" in msg
