"""Native objects are owned: closed once, safely, children before parents."""
import subprocess
import sys

import pytest

from shimmy_py import Model, NativeError


def test_close_twice_and_context_manager(tiny_path):
    m = Model(tiny_path, n_ctx=128)
    assert m.generate("Hi", max_tokens=2, temperature=0).completion_tokens == 2
    m.close()
    m.close()
    with pytest.raises(NativeError, match="closed"):
        m.generate("Hi", max_tokens=2)


def test_vocab_only_cannot_generate(vocab_model):
    with pytest.raises(Exception, match="vocab_only"):
        vocab_model.generate("Hi", max_tokens=1)


def test_open_models_at_interpreter_exit(tiny_path):
    code = ("import shimmy_py\n"
            f"m = shimmy_py.Model({str(tiny_path)!r}, n_ctx=128)\n"
            "g = m.stream('Hi', max_tokens=50, temperature=0)\n"
            "next(g)\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().strip() == "ok"
