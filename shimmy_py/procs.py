"""Child processes on loopback (llama.cpp's servers, `shimmy-py serve`): a free
port to give them, a context manager that always stops them, and an HTTP
server process that is ready once its /health answers 200."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from typing import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class ChildServer:
    """Starts `argv`, waits until `ready()` is true, and stops it on exit
    (terminate, then kill after `grace_s`), whatever happens in between."""

    def __init__(self, argv: list[str], ready: Callable[[], bool], timeout_s: float, grace_s: float = 10.0):
        self.argv, self.grace_s = argv, grace_s
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {self.proc.returncode}")
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{argv[0]} was not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def healthy(url: str) -> bool:
    """Whether GET url/health answers 200."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class ServerProcess(ChildServer):
    """An HTTP server command (llama-server, `shimmy-py serve`) on `port`,
    ready once GET /health answers 200."""

    def __init__(self, argv: list[str], port: int, timeout: float = 600):
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(argv, lambda: healthy(self.url), timeout_s=timeout, grace_s=30)


CGROUP_ROOT = "/sys/fs/cgroup/memory"


class MemoryLimit:
    """A memory cgroup (v1, as root) of `limit` bytes that child processes run
    in: the way to run a model larger than the memory it is given. `run()`
    drops the page cache first (what a cold start reads comes from the disk)
    and reports the group's peak usage; the group is removed on exit."""

    def __init__(self, limit: int, name: str = "shimmy_py_limit"):
        import os
        if not os.path.isdir(CGROUP_ROOT) or os.geteuid() != 0:
            raise RuntimeError(f"memory cgroups need root and cgroup v1 at {CGROUP_ROOT}")
        self.path, self.limit = f"{CGROUP_ROOT}/{name}-{os.getpid()}", limit

    def __enter__(self) -> MemoryLimit:
        import os
        os.makedirs(self.path, exist_ok=True)
        with open(f"{self.path}/memory.limit_in_bytes", "w") as f:
            f.write(str(self.limit))
        return self

    def run(self, argv: list[str], timeout: float = 600, drop_caches: bool = True, **kw) -> tuple:
        """(completed process, peak bytes of the group during the run)."""
        import os
        with open(f"{self.path}/memory.max_usage_in_bytes", "w") as f:
            f.write("0")
        if drop_caches:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3")
        procs = f"{self.path}/cgroup.procs"
        wrapped = ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]
        done = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout, **kw)
        with open(f"{self.path}/memory.max_usage_in_bytes") as f:
            return done, int(f.read())

    def __exit__(self, *exc) -> None:
        import os
        try:
            os.rmdir(self.path)
        except OSError:
            pass
