"""The page's place in the server's rules, decided from a request's head
(App.check) without a server: the page and its files are public and sent
under a strict policy; the page's own POSTs pass where the Host is checked,
and only there; a rebinding page still meets the Host check first."""
from types import SimpleNamespace

from shimmy_py.serving.dialects.page import CSP, PAGE
from shimmy_py.serving.dialects.routes import ROUTES
from shimmy_py.serving.http.app import App
from shimmy_py.serving.http.exchange import Request
from shimmy_py.serving.http.policy import HttpPolicy

LOOPBACK = frozenset({"127.0.0.1", "localhost"})


def app(hosts=LOOPBACK, key="k") -> App:
    state = SimpleNamespace(config=SimpleNamespace(api_key=key), catalog=SimpleNamespace(path_names={}))
    return App(state, HttpPolicy(1 << 20, None, hosts, 10.0), ROUTES)


def head(method: str, path: str, host: str, origin: str | None = None) -> Request:
    headers = {"Host": host, "Authorization": "Bearer k", **({"Origin": origin} if origin else {})}
    return Request(method, path, headers, lambda: b"{}")


def test_the_page_and_each_file_are_served_without_the_key_under_the_policy():
    a = app()
    files = sorted(p.name for p in PAGE.iterdir() if p.name != "index.html")
    for path in ["/", *(f"/ui/{f}" for f in files)]:
        r = a.handle(Request("GET", path, {"Host": "127.0.0.1:11435"}, lambda: b""))
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP, path
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.body
    assert "unsafe" not in CSP and "frame-ancestors 'none'" in CSP


def test_the_pages_own_post_passes_where_the_host_is_checked():
    own = head("POST", "/api/plan", "127.0.0.1:11435", "http://127.0.0.1:11435")
    assert app().check(own) is None
    assert app(hosts=None).check(own).status == 403           # bound to all interfaces, no --allowed-hosts
    other = head("POST", "/api/plan", "127.0.0.1:11435", "http://127.0.0.1:9999")
    assert app().check(other).status == 403                   # another port is another origin
    rebound = head("POST", "/api/plan", "evil.example:11435", "http://evil.example:11435")
    r = app().check(rebound)
    assert r.status == 403 and b"DNS rebinding" in r.body
