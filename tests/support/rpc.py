"""llama.cpp's own ggml-rpc-server on 127.0.0.1, the tests' stand-in accelerator."""
from __future__ import annotations

from shimmy_py.native import install as native
from shimmy_py.procs import ChildServer, free_port, listening

__all__ = ["RPCServer", "free_port"]


class RPCServer(ChildServer):
    """Starts the server on a free port; leaving the context always ends it."""

    def __init__(self, threads: int = 2, port: int | None = None):
        self.port = port or free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        super().__init__([str(native.tool("ggml-rpc-server")), "-H", "127.0.0.1", "-p", str(self.port),
                          "-t", str(threads)], lambda: listening(self.port), timeout_s=30)
