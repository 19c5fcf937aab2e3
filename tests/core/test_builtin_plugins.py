"""The built-in plugins together: registration is cheap and every recipe we ship validates."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ctframe.commands.main import main
from tests.conftest import REPO

BUILT_IN = (
    "folder_split,resnet_v2,torchvision,dense_head,two_phase,classification_metrics,export,gradcam,ct_volumes,mil"
)


def test_registering_the_built_in_plugins_imports_no_torch():
    code = (
        "import sys; from ctframe.registry.plugins import build_registry;"
        f"registry = build_registry(selection='{BUILT_IN}');"
        "assert not registry.broken(), registry.broken();"
        "print(len(registry.all_components()), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, torch_loaded = result.stdout.split()
    assert int(count) >= 10 and torch_loaded == "False"  # `ctframe --version` stays instant


def test_every_kind_is_provided(monkeypatch, capsys):
    monkeypatch.setenv("CTFRAME_PLUGINS", BUILT_IN)
    assert main(["list-plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["broken"] == []
    kinds = {entry["kind"] for entry in listing["components"]}
    from ctframe.base.kinds import KINDS

    assert kinds == {kind.name for kind in KINDS}  # every kind the core declares has a built-in


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_recipes_match_the_schema_and_the_validator(recipe, monkeypatch, capsys):
    import tomllib

    import jsonschema

    from ctframe.registry.recipe import load_recipe

    monkeypatch.setenv("CTFRAME_PLUGINS", BUILT_IN)
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    table = tomllib.loads(recipe.read_text())
    jsonschema.validate(table, schema)
    loaded = load_recipe(recipe)
    assert loaded.dataset.component.name == table["dataset"]["component"]
