"""The one table of component kinds.

Everything that depends on which kinds exist follows from :data:`KINDS`: the :class:`Kind` enum, the
registry's hook loop (``plugins.REGISTER_HOOKS``), the recipe's sections and ``Recipe`` attributes
and the JSON Schema. Adding a kind is adding one row here, its registration hook spec in
:mod:`ctframe.base.hookspecs` (which holds the factory's contract) and its heading in
``docs/plugins.md``; ``tests/core/test_kinds.py`` fails until all three agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class KindSpec:
    """One component kind."""

    name: str
    """Singular, as ``Kind`` values and messages name it: ``"dataset"``."""
    hook: str
    """The registration hook a plugin implements: ``"ctframe_register_datasets"``."""
    section: str | None = None
    """The recipe key that names components of this kind; ``None`` when recipes never name one."""
    many: bool = False
    """A recipe section lists several (``metrics = [...]``) instead of one table (``[dataset]``)."""


KINDS: tuple[KindSpec, ...] = (
    KindSpec("dataset", "ctframe_register_datasets", section="dataset"),
    KindSpec("backbone", "ctframe_register_backbones", section="backbone"),
    KindSpec("head", "ctframe_register_heads", section="head"),
    KindSpec("trainer", "ctframe_register_trainers", section="trainer"),
    KindSpec("metric", "ctframe_register_metrics", section="metrics", many=True),
    KindSpec("exporter", "ctframe_register_exporters"),
    KindSpec("explainer", "ctframe_register_explainers"),
)

Kind = StrEnum("Kind", {spec.name.upper(): spec.name for spec in KINDS}, module=__name__)
Kind.__doc__ = "The kinds of component a plugin can register (one member per row of ``KINDS``)."

_BY_NAME = {spec.name: spec for spec in KINDS}


def spec(kind: Kind | str) -> KindSpec:
    """The table row of one kind."""
    return _BY_NAME[str(kind)]


def recipe_kinds() -> tuple[KindSpec, ...]:
    """The kinds a recipe names, in recipe order."""
    return tuple(k for k in KINDS if k.section is not None)
