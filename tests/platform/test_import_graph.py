"""The house rules of fstore/ itself: no module imports another that imports it back (directly
or around a loop, at the top, inside a function or for type checking only), and no module is
over 500 lines. The graph is read from the source with ``ast``, so every import counts."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fstore"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The fstore modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .x import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # from fstore import featuregroups: the module, not the package
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the fstore modules it imports."""
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _loop(graph: dict[str, set[str]], component: list[str]) -> str:
    """One import loop inside a component, for the message: a -> b -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        step = sorted(graph[path[-1]] & members)
        following = next((m for m in step if m == start), None) or next((m for m in step if m not in seen), step[0])
        path.append(following)
        if following in seen:
            return " -> ".join(path[path.index(following):])
        seen.add(following)


def test_no_module_imports_itself_around_a_loop() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "fstore.session" in graph["fstore.featuregroups"]  # the graph is read
    loops = [_loop(graph, component) for component in cycles(graph)]
    assert not loops, "import loops in fstore/: " + "; ".join(loops)


def test_the_cycle_finder_finds_loops() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _loop(graph, ["a", "b", "c"]) == "a -> b -> c -> a"


def test_data_modules_take_a_session_not_the_store() -> None:
    """Only the package and the handle's factory (fstore.login) know fstore.store.FeatureStore."""
    graph = import_graph()
    users = sorted(m for m, imported in graph.items() if "fstore.store" in imported)
    assert users == ["fstore", "fstore.login"], users


def test_no_module_is_over_500_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
