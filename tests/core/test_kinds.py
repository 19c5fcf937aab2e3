"""The table of kinds is the one place a kind is declared: everything else follows from it, except the
hook specs, which are written out one by one (each with its docstring) and documented in docs/plugins.md."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

import ctframe
from ctframe.base import hookspecs, kinds
from ctframe.base.kinds import KINDS, Kind, KindSpec
from ctframe.registry import recipe, schema
from ctframe.registry.plugins import REGISTER_HOOKS, build_registry
from tests.conftest import REPO


def test_kind_enum_follows_the_table():
    assert [k.value for k in Kind] == [spec.name for spec in KINDS]
    assert Kind.DATASET == "dataset" and Kind("metric") is Kind.METRIC
    assert ctframe.Kind is Kind
    assert kinds.spec(Kind.METRIC).section == "metrics" and kinds.spec("metric").many


NOT_A_KIND = {"ctframe_register_commands"}
"""Register hooks that add something other than components."""


def _written_specs() -> list[str]:
    """The names of the ``@hookspec`` functions defined in hookspecs.py's source, in order."""
    tree = ast.parse(Path(hookspecs.__file__).read_text())

    def marked(decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return isinstance(target, ast.Name) and target.id == "hookspec"

    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and any(marked(d) for d in node.decorator_list)
    ]


SPECS = {name: getattr(hookspecs, name) for name in _written_specs()}


def test_every_kind_has_exactly_one_written_out_register_spec():
    written = _written_specs()
    assert [name for name, count in Counter(written).items() if count > 1] == [], "a spec written twice"
    # Every spec pluggy sees is one written out in the source, none made at import time.
    declared = {name for name, value in vars(hookspecs).items() if hasattr(value, "ctframe_spec")}
    assert sorted(declared ^ set(written)) == [], "specs made at import time, or lost"
    register_specs = [
        name for name in written if name.startswith("ctframe_register_") and name not in NOT_A_KIND
    ]
    assert register_specs == [spec.hook for spec in KINDS], "one spec per KINDS row, in KINDS order"
    assert {Kind(spec.name): spec.hook for spec in KINDS} == REGISTER_HOOKS


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_each_register_spec_takes_register_and_states_the_factory_contract(kind: KindSpec):
    function = SPECS[kind.hook]
    assert function.__code__.co_varnames[: function.__code__.co_argcount] == ("register",)
    doc = function.__doc__ or ""
    assert "register(name, factory, options, description" in doc, "what register takes"
    assert "Called " in doc, "when the hook is called"
    assert re.search(r"``factory\(options, context[^`]*\) -> \w+``", doc), "the factory's contract"


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_every_hook_is_documented_with_its_signature(hook: str):
    spec = SPECS[hook]
    arguments = ", ".join(spec.__code__.co_varnames[: spec.__code__.co_argcount])
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### `{hook}\({re.escape(arguments)}\)`$", docs, re.MULTILINE), (
        f"docs/plugins.md needs a heading: ### `{hook}({arguments})`"
    )
    assert spec.__doc__ and len(spec.__doc__.strip()) > 40


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
    extra = KindSpec("widget", "ctframe_register_widgets")
    monkeypatch.setattr(kinds, "KINDS", (*KINDS, extra))
    assert extra not in kinds.recipe_kinds()
    assert kinds.recipe_kinds() == recipe.COMPONENT_SECTIONS
