"""The plugin API is the only part of ctframe a plugin may import, it names only what exists, and it is cheap.

Plugins under ``plugins/`` (and the toy plugin, tests/toy, which shows what a third-party plugin
writes) import ``ctframe`` and ``ctframe.api`` (with its modules), nothing else of ctframe: every other
module is internal and may move. The check reads the source (``ast``), so imports
inside functions and under ``if TYPE_CHECKING:`` count too.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TESTS

PLUGINS = REPO / "plugins"
CORE = REPO / "ctframe"
API_MODULES = sorted(
    "ctframe.api" if path.stem == "__init__" else f"ctframe.api.{path.stem}"
    for path in (CORE / "api").glob("*.py")
)


def _is_api(module: str) -> bool:
    return module in ("ctframe", "ctframe.api") or module.startswith("ctframe.api.")


def _is_core_module(name: str) -> bool:
    """Whether ``ctframe.<name>`` is a module or package (``from ctframe import runtime`` imports it)."""
    return (CORE / f"{name}.py").is_file() or (CORE / name / "__init__.py").is_file()


def internal_imports(path: Path, root: Path = REPO) -> list[str]:
    """``file:line imports MODULE`` for each import of a ctframe module outside the plugin API."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "ctframe":  # `from ctframe import storage` imports a module too
                modules += [f"ctframe.{a.name}" for a in node.names if _is_core_module(a.name)]
        else:
            continue
        found += [
            f"{path.relative_to(root)}:{node.lineno} imports {module}"
            for module in modules
            if (module == "ctframe" or module.startswith("ctframe.")) and not _is_api(module)
        ]
    return found


def test_plugins_import_only_the_plugin_api():
    sources = [*sorted(PLUGINS.rglob("*.py")), TESTS / "toy" / "toy_ctframe.py"]
    assert len(sources) > 20, "the plugins folder moved?"
    found = [line for path in sources for line in internal_imports(path)]
    assert not found, "plugins may import only ctframe and ctframe.api*:\n" + "\n".join(found)


def test_the_check_finds_every_form_of_an_internal_import(tmp_path):
    plugin = tmp_path / "plugins" / "ctframe_bad" / "module.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(
        "from typing import TYPE_CHECKING\n"
        "import ctframe, ctframe.api.training\n"
        "from ctframe import Options, api\n"
        "from ctframe.api.data import download_checked\n"
        "import ctframe.runtime.model\n"  # line 5
        "from ctframe import registry\n"
        "import ctframe_bad.other, ctframework\n"
        "if TYPE_CHECKING:\n"
        "    from ctframe.storage.rundir import RunDirectory\n"  # line 9
        "def build():\n"
        "    from ctframe.workflows import engine\n"  # line 11
        "    return engine\n"
    )
    assert internal_imports(plugin, tmp_path) == [
        "plugins/ctframe_bad/module.py:5 imports ctframe.runtime.model",
        "plugins/ctframe_bad/module.py:6 imports ctframe.registry",
        "plugins/ctframe_bad/module.py:9 imports ctframe.storage.rundir",
        "plugins/ctframe_bad/module.py:11 imports ctframe.workflows",
    ]


@pytest.mark.parametrize("name", [*API_MODULES, "ctframe"])
def test_the_api_exports_only_names_that_exist(name: str):
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"


def _loaded_after(statement: str) -> list[str]:
    """The torch and plugin modules a fresh interpreter holds after ``statement``."""
    code = (
        "import json, sys\n"
        "from importlib import metadata\n"
        "plugins = {ep.value.split(':')[0].split('.')[0] for ep in metadata.entry_points(group='ctframe')}\n"
        f"{statement}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in plugins | {'torch'})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_ctframe_imports_no_torch_and_no_plugin():
    assert _loaded_after("import ctframe, ctframe.api") == []


def test_importing_the_core_imports_no_plugin():
    """Plugins load when a registry is built, never as a side effect of importing the core."""
    statement = (
        "import ctframe.commands.main, ctframe.workflows.engine, ctframe.registry.recipe, "
        "ctframe.registry.schema, ctframe.registry.plugins, ctframe.runtime.model, ctframe.api.training"
    )
    loaded = _loaded_after(statement)
    assert "torch" in loaded, "the probe should see torch (ctframe.api.training imports it)"
    assert [m for m in loaded if m.split(".")[0] != "torch"] == []
