"""The contract tests cover every kind, over a registry that holds every built-in plugin and the toy."""

from __future__ import annotations

from ctframe import KINDS
from tests.core.contracts.components import HERE, TOY_MODULE, built_in_plugins, registry


def test_every_kind_has_its_contract_tests():
    missing = [kind.name for kind in KINDS if not (HERE / f"test_{kind.name}s.py").is_file()]
    assert not missing, f"write tests/core/contracts/test_<kind>s.py for: {missing}"


def test_the_registry_holds_the_built_in_plugins_and_the_toy():
    assert len(built_in_plugins()) >= 8
    assert set(registry().plugins) == {*built_in_plugins(), TOY_MODULE}
    assert all(registry().names(kind.name) for kind in KINDS), "a kind without a component"
