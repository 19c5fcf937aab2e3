"""What the contract tests share: every component of every kind that the built-in plugins and the toy
plugin register, built the way the core builds it, from its options' defaults (or the fewest options
it cannot do without, listed in ``NEEDS``), with tiny inputs.

Tests are parametrised over the registry, so a component registered tomorrow is covered without an
edit here; one whose options have required fields fails until ``NEEDS`` says what to give it.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ctframe import BuildContext, Component, Kind, Options
from ctframe.registry.plugins import Registry, build_registry
from tests.conftest import REPO, TESTS

HERE = Path(__file__).parent
TOY_MODULE = "toy_ctframe_contracts"  # not "toy_ctframe": other tests install and unload that one


def built_in_plugins() -> list[str]:
    """The entry point names of the plugins under plugins/."""
    return sorted(
        ep.name
        for ep in metadata.entry_points(group="ctframe")
        if (REPO / "plugins" / ep.value.split(":")[0].split(".")[0]).is_dir()
    )


def _toy_module() -> Any:
    if TOY_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(TOY_MODULE, TESTS / "toy" / "toy_ctframe.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[TOY_MODULE] = module  # pydantic resolves the options' annotations through it
        spec.loader.exec_module(module)
    return sys.modules[TOY_MODULE]


@functools.cache
def registry() -> Registry:
    """Built-in plugins and the toy plugin; no other installed plugin, whatever $CTFRAME_PLUGINS says."""
    selection = ",".join(built_in_plugins())
    built = build_registry(extra=[_toy_module()], selection=selection, use_environment=False)
    assert not built.broken(), built.broken()
    return built


def names(kind: Kind) -> list[Any]:
    """One pytest parameter per registered component of ``kind`` (collection fails on none)."""
    found = registry().names(kind)
    assert found, f"no {kind} is registered: the {kind} contract tests would check nothing"
    return [pytest.param(name, id=name) for name in found]


def _demo_folder(tmp_path: Path) -> dict[str, Any]:
    from ctframe_folder_split.demo import generate_demo_data

    root = generate_demo_data(tmp_path / "demo", per_class=6, size=16)
    return {"root": root, "classes": ["COVID", "non-COVID"], "positive_class": "COVID"}


def _synthetic_ct(tmp_path: Path) -> dict[str, Any]:
    from ctframe_ct_volumes.synthetic import write_synthetic_set

    root, key = tmp_path / "ct", tmp_path / "pseudonym.key"
    if not root.exists():  # options are built more than once per test
        write_synthetic_set(root, patients=6, slices=4, size=(16, 16))  # 3 patients per class: 3 splits
        key.write_text("0123456789abcdef" * 4)
    return {
        "root": root,
        "labels": root / "labels.csv",
        "classes": ["normal", "nodule"],
        "positive_class": "nodule",
        "image_size": 16,
        "pseudonym_key_file": key,
    }


NEEDS: dict[tuple[Kind, str], Callable[[Path], dict[str, Any]]] = {
    (Kind.DATASET, "folder_split"): _demo_folder,
    (Kind.DATASET, "ct_volumes"): _synthetic_ct,
}
"""Options a component cannot do without (required fields, data to read), given a scratch folder."""


def options_for(component: Component, tmp_path: Path, **changes: Any) -> Options:
    """Its options' defaults, plus ``NEEDS``, plus ``changes``; a backbone never fetches weights."""
    values = NEEDS.get((component.kind, component.name), lambda _: {})(tmp_path)
    if component.kind is Kind.BACKBONE and "weights" in component.options.model_fields:
        values["weights"] = "none"  # offline and quick: random initialisation
    values.update(changes)
    try:
        return component.options.model_validate(values, context={"base_dir": tmp_path})
    except ValidationError as error:
        pytest.fail(
            f"{component.kind} {component.name!r} needs options that the contract tests do not give; "
            f"add them to NEEDS in {Path(__file__).relative_to(REPO)}: {error}"
        )


def context(tmp_path: Path) -> BuildContext:
    """What ``ctframe validate`` hands a factory: no run directory."""
    return BuildContext(seed=0, device="cpu", recipe_dir=tmp_path)


def build(kind: Kind, name: str, tmp_path: Path, *args: Any, **changes: Any) -> Any:
    """Check the options (``check``, when registered) and build the component as the core does."""
    component = registry().get(kind, name)
    assert component is not None and component.kind == kind
    options = options_for(component, tmp_path, **changes)
    if component.check is not None:
        component.check(options, context(tmp_path))
    return component.factory(options, context(tmp_path), *args)


def tiny_classifier(tmp_path: Path, class_names: tuple[str, ...] = ("dark", "bright")) -> Any:
    """The toy backbone and head: a model small enough to export and explain in a moment."""
    from ctframe.api.training import Classifier

    backbone = build(Kind.BACKBONE, "toy_backbone", tmp_path)
    head = build(Kind.HEAD, "toy_head", tmp_path, backbone.out_features, len(class_names))
    return Classifier(backbone, head, class_names).eval()
