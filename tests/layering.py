"""The architecture's import rules (docs/architecture.md), checked over the source's AST.

Every import statement counts, at the top of a module or inside a function. The rules:

    scratch      NumPy and the standard library only
    data         NumPy, pandas, pooch and the standard library: it knows no model
    reference    its framework, NumPy, and scratch's records; never comparisons
    comparisons  may import all; inside it, rooms in layers (ROOMS), nothing imports a room
                 above its own, and no module takes part in an import cycle
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from pathlib import Path

PACKAGES = ("scratch", "data", "reference", "comparisons")
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# Third-party packages each top-level package may import (besides the standard library).
ALLOWED_THIRD_PARTY = {
    "scratch": {"numpy"},
    "data": {"numpy", "pandas", "pooch"},
    "reference": {"numpy", "torch", "jax", "jaxlib", "optax"},
    "comparisons": {
        "numpy",
        "pandas",
        "torch",
        "jax",
        "optax",
        "matplotlib",
        "threadpoolctl",
        "jsonschema",
        "pytest",
        "mpmath",  # the liberror command's exact values
    },
}
# Which of this project's packages each may import.
ALLOWED_PROJECT = {
    "scratch": {"scratch"},
    "data": {"data"},
    "reference": {"reference", "scratch"},
    "comparisons": set(PACKAGES),
}
# comparisons' rooms, bottom up: a module may import its own room and the rooms below it.
ROOMS = {
    "comparisons.run": 0,
    "comparisons.oracle": 1,
    "comparisons.report": 2,
    "comparisons.faults": 3,
    "comparisons.modes": 3,
    "comparisons.bench": 4,
    "comparisons.progress": 4,
    "comparisons.cli": 5,
    "comparisons.cli_options": 5,
    "comparisons.pytest_plugin": 5,
    "comparisons.__main__": 6,
    "comparisons": 6,  # the package's own __init__
}


def sources(root: Path) -> tuple[dict[str, str], frozenset[str]]:
    """{dotted module name: source} for every module of the project's packages, and the
    names of those that are packages (an ``__init__.py``)."""
    out, packages = {}, set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path.read_text(encoding="utf-8")
            if parts[-1] == "__init__":
                packages.add(name)
    return out, frozenset(packages)


def imports(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every module name ``module`` imports (relative imports resolved), at any depth."""
    here = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _room(module: str) -> str | None:
    for room in sorted(ROOMS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return None


def violations(modules: Mapping[str, str], packages: frozenset[str] = frozenset()) -> list[str]:
    """Every broken rule, one line each; ``packages`` names the modules that are packages."""
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in modules.items():
        top = module.split(".")[0]
        for target in sorted(imports(module, source, module in packages)):
            head = target.split(".")[0]
            if head in STDLIB:
                continue
            if head in PACKAGES:
                if head not in ALLOWED_PROJECT[top]:
                    problems.append(f"{module} imports {target}: {top} may not import {head}")
                owner = _owner(target, modules)
                if owner and owner != module and not module.startswith(owner + "."):
                    graph[module].add(owner)
                    problems += _room_rule(module, owner)
            elif head not in ALLOWED_THIRD_PARTY[top]:
                problems.append(f"{module} imports {target}: {top} may not import {head}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _owner(target: str, modules: Mapping[str, str]) -> str | None:
    """The project module an import names (``pkg.mod.func`` -> ``pkg.mod``)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def _room_rule(module: str, target: str) -> list[str]:
    if not (module.startswith("comparisons") and target.startswith("comparisons")):
        return []
    mine, theirs = _room(module), _room(target)
    if mine is None or theirs is None:
        return [f"{module} imports {target}: not in a room of comparisons (see ROOMS)"]
    if ROOMS[theirs] > ROOMS[mine]:
        return [f"{module} imports {target}: {mine} may not import the room above it, {theirs}"]
    return []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per import cycle (depth-first search; each cycle reported once)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    found: dict[frozenset, list[str]] = {}

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                found.setdefault(frozenset(cycle), cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return list(found.values())
