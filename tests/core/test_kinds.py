"""The table of kinds is the one place a kind is declared: everything else follows from it."""

from __future__ import annotations

import pytest

import ctframe
from ctframe.base import hookspecs, kinds
from ctframe.base.kinds import KINDS, Kind, KindSpec
from ctframe.registry import recipe, schema
from ctframe.registry.plugins import REGISTER_HOOKS, build_registry


def test_kind_enum_follows_the_table():
    assert [k.value for k in Kind] == [spec.name for spec in KINDS]
    assert Kind.DATASET == "dataset" and Kind("metric") is Kind.METRIC
    assert ctframe.Kind is Kind
    assert kinds.spec(Kind.METRIC).section == "metrics" and kinds.spec("metric").many


def test_every_kind_has_a_documented_register_hook_spec():
    for spec in KINDS:
        function = getattr(hookspecs, spec.hook)
        assert getattr(function, "ctframe_spec", None) is not None, spec.hook
        assert spec.factory in function.__doc__
        assert function.__code__.co_varnames[: function.__code__.co_argcount] == ("register",)
    assert {Kind(spec.name): spec.hook for spec in KINDS} == REGISTER_HOOKS
    declared = {name for name in dir(hookspecs) if name.startswith("ctframe_register_")}
    assert declared - {"ctframe_register_commands"} == {spec.hook for spec in KINDS}


def test_recipe_sections_follow_the_table():
    sections = [spec.section for spec in KINDS if spec.section]
    assert [k.section for k in recipe.COMPONENT_SECTIONS] == sections
    assert ("run", *sections, "evaluation") == recipe.TOP_LEVEL_KEYS


def test_recipe_attributes_and_schema_follow_the_table(toy_site, toy_recipe):
    registry = build_registry()
    loaded = recipe.load_recipe(toy_recipe, registry=registry)
    for spec in recipe.COMPONENT_SECTIONS:
        value = getattr(loaded, spec.section)
        if spec.many:
            assert isinstance(value, tuple) and value and all(c.component.kind == spec.name for c in value)
        else:
            assert value.component.kind == spec.name
    assert loaded.dataset is loaded.sections["dataset"]
    with pytest.raises(AttributeError):
        loaded.exporter  # noqa: B018
    assert set(loaded.to_dict()) == set(recipe.TOP_LEVEL_KEYS)
    built = schema.recipe_json_schema(registry)
    assert built["required"] == [spec.section for spec in recipe.COMPONENT_SECTIONS]
    assert built["properties"]["metrics"]["type"] == "array"
    assert "oneOf" in built["properties"]["trainer"] or "description" in built["properties"]["trainer"]


def test_a_kind_outside_recipes_adds_no_section(monkeypatch):
    """A kind with ``section=None`` (an exporter, say) is registered but never named by recipes."""
    extra = KindSpec("widget", "ctframe_register_widgets", "Factory: ``factory(options, context)``.")
    monkeypatch.setattr(kinds, "KINDS", (*KINDS, extra))
    assert extra not in kinds.recipe_kinds()
    assert kinds.recipe_kinds() == recipe.COMPONENT_SECTIONS
