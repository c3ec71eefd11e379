"""`shimmy-py serve`: the rooms put together. `Server` makes the State
(models/), the App over the route table (http/app.py, dialects/routes.py)
and the transport (http/transport.py) that reads requests, hands them to
`App.handle` and writes what it answers. Each model lives in a worker
process (worker/) whose batching engine (generation/engine.py) decodes
every request's sequence in shared llama_decode calls: a native crash there
fails the requests in flight and the worker restarts, while this process
keeps answering. Secure by default: loopback, no CORS headers, the Host
header checked against the bound address (DNS rebinding), the API key
compared in constant time, and errors that never show the server's paths.
"""
from __future__ import annotations

import logging
import threading

from ..errors import ShimmyError
from .config import CONTROL_THREADS, ServeConfig
from .dialects.routes import ROUTES
from .http.app import App
from .http.transport import HttpServer
from .models.state import State

logger = logging.getLogger("shimmy_py.server")
__all__ = ["App", "ServeConfig", "Server"]


class Server:
    """The HTTP server and its models; `start()` binds, then loads the --model."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.state = State(config)
        self.app = App(self.state, config.policy(), ROUTES)
        try:
            self.httpd = HttpServer(self.app, self.state.metrics, self.app.policy, (config.host, config.port),
                                    model_threads=config.parallel + config.queue, control_threads=CONTROL_THREADS,
                                    max_pending=config.max_pending, stream_threads=config.stream_threads())
        except OSError as e:
            raise ShimmyError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}"
                              + (" (the port is in use; pick another or --port 0)" if e.errno == 98 else "")) from None
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="shimmy-http", daemon=True)

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self, load: bool = True) -> "Server":
        self._thread.start()
        if load:
            self.state.load()
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Ends open streams (the worker stops, freeing all native memory),
        then stops serving once the handlers have answered."""
        self.state.close()
        self.httpd.shutdown(grace_s)
        self.httpd.server_close()
        if not self.state.wait_idle(grace_s):
            logger.warning("requests still running after %.0f s", grace_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

