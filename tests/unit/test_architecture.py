"""The package's layering, checked on its source: ctypes only in the native
layer, no import cycles between modules or between serving's rooms, the
model worker and the engine below HTTP and the dialects, small modules."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "shimmy_py"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(path: Path, source: str | None = None) -> set[str]:
    """Modules of the package that `path` imports: anywhere, inside functions
    and under `if TYPE_CHECKING:` too (a type-only import is still a
    dependency: a circle made of them is a circle)."""
    tree = ast.parse(path.read_text() if source is None else source)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    known = modules()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m in known and m != me}


def test_ctypes_is_imported_only_by_the_native_layer():
    offenders = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "ctypes" or n.startswith("ctypes.") for n in names) \
                    and not name.startswith("shimmy_py.native"):
                offenders.append(name)
    assert offenders == []


def test_the_checks_see_a_violation():
    """The import scanner has power: it finds relative, nested and function-level imports."""
    deps = imports_of(PKG / "generation" / "model.py")
    assert {"shimmy_py.native.model_handle", "shimmy_py.gguf_io.reader", "shimmy_py.generation.vocab"} <= deps
    assert "shimmy_py.native.log" in deps            # `from ..native import log`
    assert "shimmy_py.generation.model" in imports_of(PKG / "cli.py")   # imported inside a function
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..http.app import App\n"
    assert imports_of(PKG / "serving" / "dialects" / "openai.py", typed) == {"shimmy_py.serving.http.app"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None
    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    graph = {name: imports_of(path) for name, path in modules().items()}
    # the top-level package re-exports the public API; nothing inside imports it
    importers = sorted(n for n, deps in graph.items() if "shimmy_py" in deps and n != "shimmy_py.__main__")
    assert importers == []
    assert find_cycle(graph) is None, find_cycle(graph)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


SERVING_ROOMS = ("http", "dialects", "models", "worker")


def room_of(module: str) -> str:
    """serving's rooms by name (shimmy_py.serving.http.app -> serving.http); a
    module at serving's top level is a room of its own; elsewhere, the layer."""
    parts = module.split(".")[1:]
    return ".".join(parts[:2]) if parts[:1] == ["serving"] else parts[0]


def test_serving_rooms_form_no_circle():
    """Between serving's rooms (http, dialects, models, worker, and each
    top-level module) the imports go one way: a room never reaches back."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        if name.startswith("shimmy_py.serving."):
            deps = {room_of(d) for d in imports_of(path) if d.startswith("shimmy_py.serving.")}
            graph.setdefault(room_of(name), set()).update(deps - {room_of(name)})
    assert set(SERVING_ROOMS) <= {r.split(".")[1] for r in graph}
    assert find_cycle(graph) is None, find_cycle(graph)


def reached_from(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_worker_and_the_engine_never_reach_http_or_dialects():
    """The model process runs the worker's modules and the engine: nothing
    they import, directly or through another module, is HTTP or a dialect."""
    graph = {name: imports_of(path) for name, path in modules().items()}
    below = [n for n in graph if n.startswith("shimmy_py.serving.worker") or n.startswith("shimmy_py.generation")]
    assert "shimmy_py.serving.worker.process" in below and "shimmy_py.generation.engine" in below
    problems = {n: sorted(d for d in reached_from(n, graph)
                          if d.startswith(("shimmy_py.serving.http", "shimmy_py.serving.dialects")))
                for n in below}
    assert {n: p for n, p in problems.items() if p} == {}
    assert reached_from("a", {"a": {"b"}, "b": {"c"}}) == {"b", "c"}


def test_layers_depend_downwards_only():
    """native <- gguf_io <- synthetic <- placement <- generation <- serving: a layer imports
    only the layers below it (and the shared leaves: errors, defaults, fields, sizes, version)."""
    order = ["native", "gguf_io", "synthetic", "placement", "generation", "serving"]
    shared = {"shimmy_py.errors", "shimmy_py.defaults", "shimmy_py.fields", "shimmy_py.sizes", "shimmy_py.version"}
    problems = []
    for name, path in modules().items():
        layer = name.split(".")[1] if name.count(".") >= 1 else None
        if layer not in order:
            continue
        for dep in imports_of(path) - shared:
            dep_layer = dep.split(".")[1] if dep.count(".") >= 1 else None
            if dep_layer in order and order.index(dep_layer) > order.index(layer):
                problems.append(f"{name} imports {dep}")
            elif dep_layer not in order:
                problems.append(f"{name} imports {dep} (outside the layers)")
    assert problems == []


def test_modules_are_small_and_say_what_they_own():
    for name, path in modules().items():
        source = path.read_text()
        assert len(source.splitlines()) < 400, name
        assert ast.get_docstring(ast.parse(source)), f"{name} has no docstring"
