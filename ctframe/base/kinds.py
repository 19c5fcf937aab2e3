"""The one table of component kinds.

Everything that depends on which kinds exist is derived from :data:`KINDS`: the :class:`Kind`
enum, the registration hook specs (:mod:`ctframe.base.hookspecs`), the registry's hook loop
(``plugins.REGISTER_HOOKS``), the recipe's sections and ``Recipe`` attributes, and the JSON Schema.
Adding a kind is adding one row here (plus its docs in ``docs/plugins.md``).
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
    factory: str
    """The factory's contract, one paragraph: becomes the hook spec's docstring."""
    section: str | None = None
    """The recipe key that names components of this kind; ``None`` when recipes never name one."""
    many: bool = False
    """A recipe section lists several (``metrics = [...]``) instead of one table (``[dataset]``)."""


KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        "dataset",
        "ctframe_register_datasets",
        "Factory: ``factory(options, context: BuildContext) -> DataSplits``. Called once per run before "
        "training; it reads, checks and splits the data and may write the split manifest into "
        "``context.run_dir`` (``None`` while validating). Raise :class:`ctframe.DataError` for bad data. "
        "``register`` also takes ``reader=``: ``reader(options, context) -> FileReader``, which reads new "
        "files as training did (``ctframe predict``, ``evaluate`` and the report's gallery need it).",
        section="dataset",
    ),
    KindSpec(
        "backbone",
        "ctframe_register_backbones",
        "Factory: ``factory(options, context: BuildContext) -> Backbone``: an ``nn.Module`` with "
        "``out_features`` and an ordered ``layers`` list; it normalises its own 0..255 RGB input.",
        section="backbone",
    ),
    KindSpec(
        "head",
        "ctframe_register_heads",
        "Factory: ``factory(options, context, in_features: int, num_classes: int) -> Head``: an "
        "``nn.Module`` mapping backbone feature maps to ``num_outputs`` logits, with ``penalty()``.",
        section="head",
    ),
    KindSpec(
        "trainer",
        "ctframe_register_trainers",
        "Factory: ``factory(options, context: BuildContext) -> Trainer``; ``Trainer.fit(model, data, "
        "context)`` trains the :class:`~ctframe.runtime.model.Classifier` and returns the weights of each model "
        "to evaluate (:class:`~ctframe.base.contracts.TrainedModel`); the engine predicts.",
        section="trainer",
    ),
    KindSpec(
        "metric",
        "ctframe_register_metrics",
        "Factory: ``factory(options, context: BuildContext) -> Metric``: a callable from "
        ":class:`~ctframe.base.contracts.MetricInput` to a mapping of named values.",
        section="metrics",
        many=True,
    ),
    KindSpec(
        "exporter",
        "ctframe_register_exporters",
        "Factory: ``factory(options, context: BuildContext) -> Exporter`` "
        "(:class:`ctframe.api.Exporter`): a ``suffix``, ``export(module, example, path, metadata)`` "
        "writing a uint8-in, probabilities-out module with a dynamic batch, and ``load(path)`` giving a "
        "function that runs the file, which ``ctframe export --format NAME`` uses to check every export "
        "against the PyTorch model.",
    ),
    KindSpec(
        "explainer",
        "ctframe_register_explainers",
        "Factory: ``factory(options, context: BuildContext) -> Explainer`` "
        "(:class:`ctframe.api.Explainer`): ``explainer(model, layer, images, targets)`` returns one "
        "map in [0, 1] per image, ``(N, H, W)``, of where the score of each target class comes from, "
        "seen at ``layer`` (the backbone's ``cam_layer``); ``ctframe explain --method NAME`` uses it.",
    ),
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
