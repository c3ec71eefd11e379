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


CLOSE_WHILE_GENERATING = """
import threading, time, shimmy_py
m = shimmy_py.Model({path!r}, n_ctx=512, n_threads=2)
outcome = []
def gen():
    try:
        for _ in m.stream("Go on", max_tokens=400, temperature=0):
            pass
        outcome.append("finished")
    except shimmy_py.ShimmyError as e:
        outcome.append(type(e).__name__)
t = threading.Thread(target=gen)
t.start()
time.sleep(0.3)
m.close()
t.join()
print(outcome[0])
"""

EXIT_WHILE_STREAMING = """
import threading, time, shimmy_py
m = shimmy_py.Model({path!r}, n_ctx=512, n_threads=2)
def gen():
    for _ in m.stream("Go on", max_tokens=400, temperature=0):
        pass
threading.Thread(target=gen, daemon=True).start()
time.sleep(0.3)
print("exiting")
"""


@pytest.mark.parametrize("script, expected", [(CLOSE_WHILE_GENERATING, {"NativeError", "finished"}),
                                              (EXIT_WHILE_STREAMING, {"exiting"})])
def test_close_or_exit_while_another_thread_generates(tiny_path, script, expected):
    """close() from another thread, or interpreter exit while a daemon thread
    streams, waits for the native call in flight and then frees: the
    generating thread gets a NativeError, never freed memory (both crashed
    with SIGSEGV before)."""
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", script.format(path=str(tiny_path))], capture_output=True,
                              timeout=120)
        assert proc.returncode == 0, (proc.returncode, proc.stderr.decode()[-2000:])
        assert proc.stdout.decode().split()[-1] in expected
