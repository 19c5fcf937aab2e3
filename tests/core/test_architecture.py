"""The core's floors (docs/architecture.md): each package imports only its own floor and those below, no
module imports another in a circle, and function-level imports live in the command modules only.

Imports are read from the source (``ast``); those under ``if TYPE_CHECKING:`` are type hints, not imports.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from tests.conftest import REPO

CORE = REPO / "ctframe"
FLOORS = (
    "base",
    "storage",
    "registry",
    "data",
    "runtime",
    "evaluation",
    "report",
    "workflows",
    "api",
    "commands",
)
"""Bottom to top; ``ctframe/__init__.py`` re-exports the api and ``__main__`` starts the commands."""
TOP = {"ctframe": len(FLOORS), "ctframe.__main__": len(FLOORS)}
LAZY_ALLOWED = {
    # the commands import their workflow when they run: `ctframe --version` and `--help` load no torch
    "commands": "command modules",
    # PEP 562: `import ctframe` stays free of torch until ctframe.load_model is asked for
    "ctframe": "ctframe/__init__.py's __getattr__",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every runtime import of a ctframe module."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(
                    (a.name, child.lineno, inside) for a in child.names if a.name.startswith("ctframe")
                )
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                if base == "ctframe" or base.startswith("ctframe."):
                    # `from ctframe.x import y` may import the module ctframe.x.y
                    for alias in child.names:
                        candidate = f"{base}.{alias.name}"
                        target = candidate if _exists(candidate) else base
                        found.append((target, child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return found


def _exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@functools.cache
def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    graph = {}
    for path in sorted(CORE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = _imports(
            ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py"
        )
    return graph


def _floor(module: str) -> int:
    if module in TOP:
        return TOP[module]
    return FLOORS.index(module.split(".")[1])


def test_every_core_module_sits_on_a_floor():
    stray = [m for m in _graph() if m not in TOP and (m.count(".") < 1 or m.split(".")[1] not in FLOORS)]
    assert not stray, f"modules outside every floor (add them to a package of FLOORS): {stray}"


def test_no_module_imports_a_floor_above_its_own():
    upward = sorted(
        {
            f"{module} (floor {FLOORS[_floor(module)] if module not in TOP else 'top'}) imports {target} "
            f"(floor {FLOORS[_floor(target)]}) at line {line}"
            for module, imports in _graph().items()
            if module not in TOP
            for target, line, _ in imports
            if target in _graph() and target not in TOP and _floor(target) > _floor(module)
        }
    )
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph = {
        m: sorted({t for t, _, _ in imports if t in _graph() and t != m}) for m, imports in _graph().items()
    }
    # a package's __init__ importing its own modules is how Python packages work, not a circle
    for module, targets in graph.items():
        graph[module] = [t for t in targets if not t.startswith(module + ".")]
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                circles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                walk(target, [*trail, target])
        state[node] = 2

    for module in graph:
        if module not in state:
            walk(module, [module])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_function_level_imports_only_where_they_have_a_reason():
    lazy = sorted(
        {
            f"{module}:{line} imports {target} inside a function"
            for module, imports in _graph().items()
            for target, line, inside in imports
            if inside and not (module == "ctframe" or module.split(".")[1] in LAZY_ALLOWED)
        }
    )
    assert not lazy, "\n".join(lazy)


@pytest.mark.parametrize("rule", [test_no_module_imports_a_floor_above_its_own, test_no_import_circle])
def test_the_rules_catch_a_planted_violation(rule, monkeypatch):
    # base/errors.py importing the workflows is both a circle and an upward import
    original = _imports

    def planted(tree, module, is_package):
        found = original(tree, module, is_package)
        if module == "ctframe.base.errors":
            found.append(("ctframe.workflows.engine", 1, False))
        return found

    monkeypatch.setitem(globals(), "_imports", planted)
    _graph.cache_clear()
    try:
        with pytest.raises(AssertionError):
            rule()
    finally:
        _graph.cache_clear()
