"""The package layout is the architecture (DESIGN.md §2): imports point one way, with no
cycle between byodb's top-level packages, the composition root (``byodb.runtime``) is
imported only by the entry layers, and no module hides an import inside a function."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import byodb

SOURCE = Path(byodb.__file__).parent
ENTRY_LAYERS = {"web", "cli", "jobs", "runtime", "__main__"}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(SOURCE)), ast.parse(path.read_text()))
            for path in sorted(SOURCE.rglob("*.py"))]


def _package_of(relative: str) -> str:
    return relative.split("/")[0].removesuffix(".py")


def _imported_packages(tree: ast.Module, relative: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "byodb" and len(parts) > 1 and (
                    (SOURCE / parts[1]).is_dir() or (SOURCE / f"{parts[1]}.py").exists()):
                found.add(parts[1])
    found.discard(_package_of(relative))
    return found


def test_no_cycle_between_top_level_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for relative, tree in _modules():
        edges[_package_of(relative)] |= _imported_packages(tree, relative)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(p for p in edges if reaches(p, p, {p}))
    assert cycles == [], f"packages in an import cycle: {cycles}"


def test_runtime_only_in_entry_layers() -> None:
    users = [relative for relative, tree in _modules()
             if _package_of(relative) not in ENTRY_LAYERS
             and "runtime" in _imported_packages(tree, relative)]
    assert users == []


def test_no_imports_inside_functions_below_the_entry_layers() -> None:
    """A lazy import hides a dependency (often one that would make a cycle)."""
    lazy = []
    for relative, tree in _modules():
        if _package_of(relative) in ENTRY_LAYERS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lazy += [f"{relative}:{inner.lineno}" for inner in ast.walk(node)
                         if isinstance(inner, ast.Import | ast.ImportFrom)]
    assert lazy == []


# Inside ``instances/``: the connection layer at the bottom, one database's lifecycle on it,
# the fleet and health built on both. Each package may import only those below it.
INSTANCE_LAYERS = {"connection": set(), "lifecycle": {"connection"},
                   "fleet": {"connection", "lifecycle"}, "health": {"connection", "lifecycle"}}
MAX_INSTANCES_MODULE_LINES = 400


def _instance_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {name.split(".")[2] for name in names
                  if name.startswith("byodb.instances.") and len(name.split(".")) > 2}
    return found


def test_instances_packages_point_down() -> None:
    """``lifecycle/`` imports neither ``fleet/`` nor ``health/``; ``connection/`` nothing
    above it; ``fleet/`` and ``health/`` not each other."""
    upward = []
    for relative, tree in _modules():
        parts = relative.split("/")
        if parts[0] != "instances" or len(parts) < 3:
            continue
        allowed = INSTANCE_LAYERS[parts[1]] | {parts[1]}
        upward += [f"{relative} → {there}" for there in sorted(_instance_imports(tree))
                   if there not in allowed]
    assert upward == []
    assert sorted(p.name for p in (SOURCE / "instances").iterdir()
                  if p.suffix == ".py" and p.name != "__init__.py") == []



def test_instances_modules_are_small() -> None:
    large = [f"{relative}: {len(path.read_text().splitlines())} lines"
             for relative, path in ((str(p.relative_to(SOURCE)), p)
                                    for p in sorted((SOURCE / "instances").rglob("*.py")))
             if len(path.read_text().splitlines()) > MAX_INSTANCES_MODULE_LINES]
    assert large == []
