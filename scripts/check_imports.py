#!/usr/bin/env python3
"""Fail on any import circle inside a package tree: ``python scripts/check_imports.py src/staywire``.

Every import counts, including those under ``if TYPE_CHECKING:`` and inside functions:
a circle that only the type checker or a late import hides is still two modules that
cannot be read, tested or replaced apart. ``from pkg import name`` is an edge to
``pkg.name`` when that is a module (as grimp and import-linter resolve it), else to
``pkg``; a package's own ``__init__`` is not an implicit dependency of its submodules.
Prints each circle as ``a -> b -> a`` and exits 1 if there is one.

It also holds the layers that must never import upward (``FORBIDDEN``): the sans-I/O
protocol core imports no broker, server or client code, and brokers import no server
or client code.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


FORBIDDEN: dict[str, tuple[str, ...]] = {
    "staywire.protocol": ("staywire.brokers", "staywire.server", "staywire.client",
                          "staywire.deploy", "staywire.cli"),
    "staywire.brokers": ("staywire.server", "staywire.client", "staywire.deploy",
                         "staywire.cli"),
}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """``a imports b`` for every import that goes against ``FORBIDDEN``."""
    found = []
    for name in sorted(graph):
        for layer, banned in FORBIDDEN.items():
            if _within(name, layer):
                found += [f"{name} imports {target} ({layer} must not import {ban})"
                          for target in sorted(graph[name])
                          for ban in banned if _within(target, ban)]
    return found


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at ``root``."""
    base = root.parent
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in modules:  # ``a.b.C`` (a class) -> ``a.b``
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                resolve(sub if sub in modules else source)
    return found


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """The strongly connected components with more than one module (Tarjan): each as a
    shortest circle through its first module, for a readable message, and its members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(_circle(graph, comp), comp) for comp in sorted(components)]


def _circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth-first inside the component, back to start
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component  # pragma: no cover - a component always has a circle


def graph_of(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def check(root: Path) -> list[tuple[list[str], list[str]]]:
    return cycles(graph_of(root))


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("src/staywire")]
    bad = 0
    for root in roots:
        graph = graph_of(root)
        for line in violations(graph):
            print(f"upward import: {line}")
            bad += 1
        found = cycles(graph)
        for circle, members in found:
            others = sorted(set(members) - set(circle))
            print(f"import circle: {' -> '.join(circle)}"
                  + (f" (its group also holds {', '.join(others)})" if others else ""))
        bad += len(found)
        print(f"{root}: {len(found)} import circle(s) in {len(graph)} modules")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
