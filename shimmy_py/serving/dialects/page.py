"""The page people open in a browser (GET / and GET /ui/FILE): static files
of shimmy_py/serving/page, served as they are (no build step, nothing
fetched from elsewhere), under a strict Content-Security-Policy: scripts,
styles and connections from this server only, no inline script or style,
no framing. The page is public (it holds nothing); what it calls is not:
with --api-key it asks for the key and sends it."""
from __future__ import annotations

from pathlib import Path

from ..http.app import App, Route
from ..http.exchange import Request, Response

PAGE = Path(__file__).resolve().parent.parent / "page"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _file(name: str):
    path = PAGE / name

    def serve(app: App, req: Request) -> Response:
        return Response(200, path.read_bytes(), TYPES[path.suffix], dict(HEADERS))
    serve.__name__ = f"page_{path.stem}"
    return serve


def routes() -> tuple[Route, ...]:
    """GET / (index.html) and GET /ui/NAME for each other file of the page."""
    files = sorted(p.name for p in PAGE.iterdir() if p.suffix in TYPES)
    return (Route("GET", "/", _file("index.html"), public=True),
            *(Route("GET", f"/ui/{name}", _file(name), public=True) for name in files if name != "index.html"))
