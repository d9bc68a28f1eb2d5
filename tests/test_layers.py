"""The import graph: no circles inside a package, and the contracts of `.importlinter` hold.

`KNOWN_CIRCLES` lists the circles still to break (issue 24). The test asserts the graph has
exactly those, so a new circle fails it and a broken one must be struck from the list.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agentfirewall", "agentfirewall_server", "agentfirewall_proxy")


def circle(names: str) -> frozenset[str]:
    """A circle written as its modules' names, relative to the package, space-separated."""
    return frozenset(names.split())


# one line per circle: the modules of the package that import each other round
KNOWN_CIRCLES: dict[str, set[frozenset[str]]] = {
    "agentfirewall": set(),
    "agentfirewall_server": set(),
    "agentfirewall_proxy": set(),
}


def circles(graph: grimp.ImportGraph, package: str) -> set[frozenset[str]]:
    """The strongly connected components of more than one module inside `package`."""
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while (member := stack.pop()) != module:
                component.append(member)
            component.append(module)
            if len(component) > 1:
                found.add(frozenset(short(m, package) for m in component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def short(module: str, package: str) -> str:
    return "<package>" if module == package else module.removeprefix(package + ".")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_new_import_circle(graph: grimp.ImportGraph, package: str) -> None:
    assert circles(graph, package) == KNOWN_CIRCLES[package]


def test_import_contracts_hold() -> None:
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports("
    script += "no_cache=True, no_logo=True))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
