"""The layering the README draws, checked on the source: the pipeline writes the lake, the app reads it,
and what both need lives in ``atlas``. Every import counts, including ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("atlas", "lake", "pipeline", "pages")
APP_SIDE = ("app.py", "api.py", "services.py", "gunicorn.conf.py", "pages")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for name in ("app", "api", "services"):
        out[name] = REPO / f"{name}.py"
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports (``from a.b import c`` counts as a.b.c when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_the_app_side_never_imports_the_pipeline():
    modules = _modules()
    offenders = []
    for entry in APP_SIDE:
        for path in ([REPO / entry] if entry.endswith(".py") else (REPO / entry).rglob("*.py")):
            bad = {m for m in _imports(path, modules) if m == "pipeline" or m.startswith("pipeline.")}
            offenders += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(bad)]
    assert offenders == []


def test_lake_and_atlas_import_neither_the_pipeline_nor_the_app():
    modules = _modules()
    for name, path in modules.items():
        if name.split(".")[0] in ("lake", "atlas"):
            deps = _imports(path, modules)
            assert not {d for d in deps if d.split(".")[0] in ("pipeline", "pages", "app", "api", "services")}, name


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle between modules
    graph = {n: {d for d in deps if not n.startswith(d + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
