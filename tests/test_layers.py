"""The package's dependencies point one way: ``pipeline`` -> ``steps`` -> ``beam`` -> ``models``, and no module
imports one that imports it back, function-local imports included (a cycle closed by a local import is still a
cycle). docs/architecture.md describes the layers.

Imports under ``if TYPE_CHECKING:`` are left out: they are never executed, and only name types for readers.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "beam_distil"

# What each layer may import besides itself and the modules at the package's root (helpers, rows, cache...).
ALLOWED_LAYERS: Dict[str, Set[str]] = {
    "models": set(),
    "beam": {"models"},
    "steps": {"beam", "models"},
    "pipeline": {"steps", "beam", "models"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_nodes(tree: ast.AST) -> Set[int]:
    skipped: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    return skipped


def imported_modules(path: Path, modules: Set[str]) -> Set[str]:
    """The project modules ``path`` imports anywhere (module level or in a function), as module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_nodes(tree)
    found: Set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `from pkg.module import function` -> pkg.module
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> Dict[str, Set[str]]:
    paths = {module_name(path): path for path in PACKAGE_ROOT.rglob("*.py") if "__pycache__" not in path.parts}
    modules = set(paths)
    return {name: imported_modules(path, modules) - {name} for name, path in paths.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.get(module, ()):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED_LAYERS) else "root"


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert "beam_distil.beam.launch" in graph["beam_distil.pipeline.pipeline"]  # local imports are seen

    assert cycles(graph) == []


def test_layers_only_import_the_layers_below() -> None:
    wrong = [
        f"{module} imports {imported}"
        for module, imports in import_graph().items()
        for imported in imports
        if layer(module) in ALLOWED_LAYERS
        and layer(imported) in ALLOWED_LAYERS
        and layer(imported) != layer(module)
        and layer(imported) not in ALLOWED_LAYERS[layer(module)]
    ]

    assert wrong == []


def test_the_cycle_finder_finds_a_cycle_closed_by_a_local_import(tmp_path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]

    module = tmp_path / "m.py"
    module.write_text("def f():\n    from beam_distil.beam import launch\n\nif TYPE_CHECKING:\n    import beam_distil.models\n")
    assert imported_modules(module, {"beam_distil.beam.launch", "beam_distil.models"}) == {"beam_distil.beam.launch"}
