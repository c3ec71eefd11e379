"""Metadata values llama.cpp aborts on (GGML_ASSERT, SIGABRT) are caught by
the header check first: a GGUFError naming key and value, through the Python
API, `plan` and `generate`; the process lives."""
import math
import subprocess
import sys

import pytest
from gguf import GGUFValueType

from shimmy_py import GGUFError, Model, make_plan
from shimmy_py.gguf_io.reader import read_header
from shimmy_py.gguf_io.writer import GGUFBuilder

U32, F32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32


def rewrite(src, dst, changes: dict, drop=()) -> str:
    """A copy of `src` with metadata keys changed ({key: (value, type)}) and
    the tensors named in `drop` left out (a key not in `src` is added)."""
    h = read_header(src)
    b = GGUFBuilder(h.alignment)
    for name in h.metadata:
        if name in changes:
            b.add(name, *changes[name])
        else:
            b.add_raw(name, h.raw_kv(name))
    for name in set(changes) - set(h.metadata):
        b.add(name, *changes[name])
    with open(src, "rb") as f:
        for t in h.tensors:
            if t.name in drop:
                continue
            f.seek(t.offset)
            data = f.read(t.nbytes)
            b.add_tensor(t.name, t.shape, t.ggml_type, lambda data=data: data)
    b.write(dst)
    return str(dst)


CASES = [
    ("deepseek.block_count", 0, U32), ("deepseek.block_count", 1000, U32),
    ("deepseek.expert_count", 0, U32), ("deepseek.expert_count", 2**31, U32),
    ("deepseek.expert_used_count", 0, U32), ("deepseek.expert_used_count", 100, U32),
    ("deepseek.rope.dimension_count", 1000, U32),
    ("deepseek.attention.layer_norm_rms_epsilon", math.nan, F32),
    ("deepseek.attention.head_count_kv", 3, U32),
    ("deepseek.embedding_length", 65, U32),
    ("deepseek.nextn_predict_layers", 1000, U32),     # GGML_ASSERT(n_layer_nextn <= n_layer_all)
]


@pytest.mark.parametrize("name, value, vtype", CASES)
def test_a_corrupt_value_is_a_gguf_error_naming_it(tiny_path, tmp_path, name, value, vtype):
    bad = rewrite(tiny_path, tmp_path / "bad.gguf", {name: (value, vtype)})
    with pytest.raises(GGUFError) as e:
        Model(bad, n_ctx=64)
    assert name in str(e.value) and (str(value) in str(e.value) or "nan" in str(e.value))
    with pytest.raises(GGUFError):
        make_plan(bad)


def test_the_cli_says_one_line_and_lives(tiny_path, tmp_path):
    bad = rewrite(tiny_path, tmp_path / "bad.gguf", {"deepseek.expert_used_count": (100, U32)})
    for args in (["generate", bad, "-p", "Hi", "-n", "2"], ["plan", bad]):
        p = subprocess.run([sys.executable, "-m", "shimmy_py", *map(str, args)], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 1 and "expert_used_count = 100" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_the_untouched_copy_still_loads(tiny_path, tmp_path):
    same = rewrite(tiny_path, tmp_path / "same.gguf", {})
    with Model(same, n_ctx=64) as m:
        assert m.generate("Hi", max_tokens=2, temperature=0).completion_tokens == 2


def test_a_failed_load_says_what_llama_cpp_said(tiny_path, tmp_path):
    """Not "failed to load model" but llama.cpp's reason."""
    from shimmy_py import NativeError
    bad = rewrite(tiny_path, tmp_path / "missing.gguf", {}, drop={"blk.0.attn_q.weight"})
    with pytest.raises(NativeError, match="blk.0.attn_q.weight"):
        Model(bad, n_ctx=64)
