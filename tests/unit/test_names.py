"""Model names the server answers to, and discovery in folders."""
from pathlib import Path

import pytest

from shimmy_py.errors import ShimmyError
from shimmy_py.serving.models.names import name_table, resolve_model, short_name


@pytest.mark.parametrize("name, short", [("deepseek-moe-16b-f16", "deepseek-moe-16b"), ("qwen3-30b-a3b-q4_k_m",
                                         "qwen3-30b-a3b"), ("gpt-oss-20b-mxfp4", "gpt-oss-20b"),
                                         ("plain", None), ("model.q8_0", "model")])
def test_short_names(name, short):
    assert short_name(name) == short


def test_short_names_only_where_unambiguous():
    table = name_table([Path("a/M-Q8_0.gguf"), Path("b/m-f16.gguf"), Path("c/Other-F16.gguf")])
    assert set(table) == {"m-q8_0", "m-f16", "other-f16", "other"}   # "m" names two files
    assert table["other"] == Path("c/Other-F16.gguf")


def test_discover_and_resolve(tmp_path):
    (tmp_path / "b.gguf").write_bytes(b"x")
    (tmp_path / "a-F16.gguf").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert resolve_model("A", [tmp_path]) == tmp_path / "a-F16.gguf"
    assert resolve_model(str(tmp_path / "b.gguf"), []) == tmp_path / "b.gguf"
    with pytest.raises(ShimmyError, match="known: .*a, a-f16, b"):
        resolve_model("c", [tmp_path])
