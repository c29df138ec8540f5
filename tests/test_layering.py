"""The package's shape, checked: no import circle, a core that knows nothing of Jupyter, small
modules (docs/architecture.md).

Imports are read from the source (ast), function-local and TYPE_CHECKING ones included: a circle
broken only by importing inside a function is still a circle for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "timeback_jupyter"
NAME = "timeback_jupyter"
# The core: what the server, the CLI, the standalone kernel (and later a hub relay) are built on.
CORE = (
    "model", "config", "clock", "caliper", "identity", "connection", "store", "delivery",
    "tracker", "notebook_metadata", "core",
    # the hub relay's core; its service face (relay.app, relay.handlers, relay.settings) is not
    "relay.catalog", "relay.users", "relay.schema", "relay.migrations", "relay.database",
    "relay.incoming", "relay.spans", "relay.rules", "relay.statements", "relay.batching",
    "relay.ingest", "relay.records", "relay.outbox", "relay.jobs", "relay.letters",
)  # fmt: skip
RELAY_FACE = ("relay.app", "relay.handlers", "relay.settings")
FACES = (
    "jupyter_server", "tornado", "ipykernel", "IPython", "ipywidgets", "jupyterlab", "notebook",
    "jupyterhub",
)  # fmt: skip
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if "labextension" not in p.relative_to(PACKAGE).parts
    }


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, resolved to absolute dotted names."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from . import x` imports the submodule x when there is one
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(name, path):
            # importing a.b.c runs a, a.b and a.b.c
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in modules and candidate != name:
                    targets.add(candidate)
        # a package's parents run first, but that is not an edge the reader follows
        graph[name] = {t for t in targets if not name.startswith(t + ".") and t != NAME}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("core", CORE)
def test_the_core_knows_nothing_of_jupyter(core):
    modules = _modules()
    package = f"{NAME}.{core}"
    mine = {n: p for n, p in modules.items() if n == package or n.startswith(package + ".")}
    assert mine, f"{NAME}.{core} does not exist"
    for name, path in mine.items():
        faces = {i for i in _imports(name, path) if i.split(".")[0] in FACES}
        local = {i for i in _imports(name, path) if i.startswith(f"{NAME}.")}
        assert not faces, f"{name} imports {sorted(faces)}"
        outside = {
            i
            for i in local
            if i.split(".")[1] in ("server", "kernel", "cli")
            or any(i == f"{NAME}.{f}" or i.startswith(f"{NAME}.{f}.") for f in RELAY_FACE)
        }
        assert not outside, f"{name} (core) imports the faces {sorted(outside)}"


def test_no_module_is_large():
    large = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not large, f"modules over {MAX_LINES} lines (split along their seams): {large}"
