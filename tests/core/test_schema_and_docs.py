"""The JSON Schema matches what the validator accepts; every hook is documented and tested."""

from __future__ import annotations

import json
import re
import tomllib

import jsonschema
import pytest

from ctframe.base import hookspecs
from ctframe.commands.app import main
from tests.conftest import REPO, TESTS

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("ctframe_"))


def _schema(capsys) -> dict:
    assert main(["schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_schema_accepts_a_valid_recipe_and_rejects_bad_ones(toy_site, toy_recipe, capsys):
    schema = _schema(capsys)
    jsonschema.Draft202012Validator.check_schema(schema)
    recipe = tomllib.loads(toy_recipe.read_text())
    jsonschema.validate(recipe, schema)
    recipe["trainer"]["epochz"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(recipe, schema)
    recipe["trainer"].pop("epochz")
    recipe["trainer"]["component"] = "unknown_trainer"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(recipe, schema)


def test_schema_carries_option_help(toy_site, capsys):
    schema = _schema(capsys)
    (trainer,) = schema["properties"]["trainer"]["oneOf"]
    assert trainer["properties"]["epochs"]["description"] == "passes over the training split"
    assert trainer["properties"]["epochs"]["default"] == 20


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    spec = getattr(hookspecs, hook)
    arguments = ", ".join(spec.__code__.co_varnames[: spec.__code__.co_argcount])
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### `{hook}\({re.escape(arguments)}\)`$", docs, re.MULTILINE), (
        f"docs/plugins.md needs a heading: ### `{hook}({arguments})`"
    )
    assert spec.__doc__ and len(spec.__doc__.strip()) > 40


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook):
    sources = [p.read_text() for p in TESTS.rglob("*.py") if p.name != "test_schema_and_docs.py"]
    assert any(hook in text for text in sources), f"no test mentions {hook}"


def test_version(capsys):
    from ctframe import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ctframe {__version__}"
