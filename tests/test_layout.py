"""The package's layering, read from the source: no import cycle, and latency's two halves apart.

The graph holds the imports that run when a module is imported: module-level ``import`` and
``from ... import`` statements, including those under ``try`` and plain ``if``, but not those under
``if TYPE_CHECKING:`` (never run) nor inside functions (run on call, after every module has loaded).
``from package import name`` counts as an import of ``package.name`` where that is a module.

The rule for ``nasseg.latency``: a module of ``measure/`` imports nothing from ``predict/`` and a
module of ``predict/`` nothing from ``measure/``; what both need lives in the shared modules beside
them (``result``, ``targets``, ``timing``), which import neither half.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nasseg

PACKAGE = Path(nasseg.__file__).resolve().parent
LATENCY = "nasseg.latency"
HALVES = (f"{LATENCY}.measure", f"{LATENCY}.predict")
SHARED = {f"{LATENCY}.{name}" for name in ("result", "targets", "timing")}


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The nasseg modules that importing ``name`` imports directly."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                anchor = package[: len(package) - node.level + 1] if node.level else []
                base = ".".join([*anchor, *([node.module] if node.module else [])])
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    visit(block)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(ast.parse(path.read_text(), str(path)).body)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _module_files()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def _half(module: str) -> str | None:
    return next((h for h in HALVES if module == h or module.startswith(h + ".")), None)


def test_the_graph_sees_the_packages_imports() -> None:
    graph = import_graph()
    assert len(graph) > 50 and f"{LATENCY}.predict.predictor" in graph
    assert f"{LATENCY}.predict.costs" in graph[f"{LATENCY}.predict.predictor"]
    # Imports only a type checker reads are not edges (optable's sklearn import is one).
    assert all(not m.startswith("sklearn") for m in graph[f"{LATENCY}.predict.optable"])


def test_the_package_has_no_import_cycle() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_would_be_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_measure_and_predict_meet_only_in_the_shared_modules() -> None:
    graph = import_graph()
    crossings = [
        f"{m} -> {n}"
        for m, deps in graph.items()
        if (mine := _half(m))
        for n in deps
        if (theirs := _half(n)) and theirs != mine
    ]
    assert not crossings, "measure/ and predict/ import each other: " + ", ".join(crossings)
    shared_into_halves = [f"{m} -> {n}" for m in SHARED for n in graph[m] if _half(n)]
    assert not shared_into_halves, "a shared module imports a half: " + ", ".join(shared_into_halves)
    assert SHARED <= set(graph), "a shared module is missing: " + ", ".join(SHARED - set(graph))
