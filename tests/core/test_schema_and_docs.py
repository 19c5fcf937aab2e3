"""The JSON Schema matches what the validator accepts; ``--version``. (Hook specs and their docs:
test_kinds.py; every hook called by the core: test_plugins.py.)"""

from __future__ import annotations

import json
import tomllib

import jsonschema
import pytest

from ctframe.commands.main import main


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


def test_version(capsys):
    from ctframe import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ctframe {__version__}"
