"""`shimmy-py serve` stops on SIGTERM whichever of its threads the kernel hands
the signal to. A main thread asleep on an Event was not woken by a signal
another thread took, and the server went on serving (CI at a695c0f:
tests/test_cli.py::test_serve_sigterm_ends_open_streams_and_exits saw its
stream run to "length"). Here a thread sends the signal to itself, so it is
never the main thread that takes it: an Event's wait hangs on this every time."""
import signal
import subprocess
import sys

CHILD = """
import signal, threading, time
from shimmy_py.cli_serve import StopSignal
stop = StopSignal()
def other_thread():
    time.sleep(0.3)                        # the main thread is asleep in wait() by now
    signal.pthread_kill(threading.get_ident(), signal.%s)
    time.sleep(60)
threading.Thread(target=other_thread, daemon=True).start()
print(stop.wait(), flush=True)
"""


def test_a_signal_another_thread_takes_wakes_the_main_thread():
    for name in ("SIGTERM", "SIGINT"):
        p = subprocess.run([sys.executable, "-c", CHILD % name], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == str(int(getattr(signal, name)))
