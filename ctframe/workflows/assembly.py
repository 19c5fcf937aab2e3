"""Building what a recipe names: the build context, the data, the classifier (and the weights it starts
from), the trainer and the metrics, plus the checks that run before any of it."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ctframe.base.contracts import BuildContext, DataSplits
from ctframe.base.errors import DataError, RecipeError
from ctframe.base.filenames import ensure_escaped
from ctframe.base.training import Trainer, check_trainer_contract
from ctframe.evaluation.aggregate import group_labels
from ctframe.registry.recipe import Recipe
from ctframe.runtime import distributed
from ctframe.runtime.model import Classifier, resolve_device
from ctframe.storage.checkpoints import check_state_fits, read_state_dict
from ctframe.storage.modelfile import read_model_info
from ctframe.storage.rundir import RunDirectory

LOGGER_NAME = "ctframe"


def resolved_device(recipe: Recipe) -> str:
    try:
        return resolve_device(recipe.run.device)
    except ValueError as error:
        raise RecipeError(f"{recipe.path}: [run] device: {error}") from None


def make_context(recipe: Recipe, run_dir: RunDirectory | None, resume: bool = False) -> BuildContext:
    return BuildContext(
        seed=recipe.run.seed,
        device=distributed.local_device(resolved_device(recipe)),
        recipe_dir=recipe.path.parent,
        run_dir=run_dir,
        resume=resume,
        logger=logging.getLogger(LOGGER_NAME),
        fold=recipe.run.fold(),
    )


def build_data(recipe: Recipe, context: BuildContext) -> DataSplits:
    data = recipe.dataset.component.factory(recipe.dataset.options, context)
    if context.fold is not None and list(data.summary.get("fold", ())) != list(context.fold):
        raise RecipeError(
            f"{recipe.path}: dataset {recipe.dataset.component.name!r} does not make cross-validation folds "
            "(its summary has no 'fold'); ctframe cv needs a dataset that supports them"
        )
    if not isinstance(data, DataSplits):
        raise TypeError(
            f"dataset {recipe.dataset.component.name!r} returned {type(data).__name__}, not DataSplits"
        )
    check_group_classes(data, f"dataset {recipe.dataset.component.name!r}")
    return data


def _labels_and_ids(dataset: Any) -> tuple[Any, list[str]] | None:
    """A split's labels and sample ids without reading its images, when it keeps them as ``labels`` and
    ``sample_ids`` (or ``ids``), as the built-in datasets do; ``None`` otherwise."""
    labels = getattr(dataset, "labels", None)
    ids = getattr(dataset, "sample_ids", None)
    ids = getattr(dataset, "ids", None) if ids is None else ids
    if labels is None or ids is None or len(labels) != len(ids):
        return None
    return np.asarray(labels, dtype=np.int64), [str(sample) for sample in ids]


def check_group_classes(data: DataSplits, where: str) -> None:
    """With groups, every validation and test group must hold one true class (each is one answer with one
    truth) and every sample a group: one line before training rather than a failure after it. Splits
    that do not expose their labels are checked at evaluation instead."""
    if not data.groups:
        return
    for name, split in (("validation", data.val), ("test", data.test)):
        found = _labels_and_ids(split)
        if found is None or not found[1]:
            continue
        labels, ids = found
        lacking = [sample for sample in ids if sample not in data.groups]
        if lacking:
            raise DataError(
                f"{where}, {name} split: {len(lacking)} sample(s) have no group (first: "
                f"{ensure_escaped(lacking[0])}); the dataset must give every sample a group"
            )
        groups = np.asarray([data.groups[sample] for sample in ids])
        try:
            group_labels(labels, groups, np.unique(groups))
        except DataError as error:
            raise DataError(f"{where}, {name} split: {error}") from None


def build_model(recipe: Recipe, context: BuildContext, class_names: tuple[str, ...]):
    backbone = recipe.backbone.component.factory(recipe.backbone.options, context)
    head = recipe.head.component.factory(
        recipe.head.options, context, backbone.out_features, len(class_names)
    )
    return Classifier(backbone, head, class_names)


def build_metrics(recipe: Recipe, context: BuildContext) -> list[tuple[str, Any]]:
    return [(m.component.name, m.component.factory(m.options, context)) for m in recipe.metrics]


def build_trainer(recipe: Recipe, context: BuildContext) -> Trainer:
    """The recipe's trainer, checked once against the Trainer contract: the engine reads its members
    directly from here on, so a plugin's missing member is one line at build time, not a failure later."""
    component = recipe.trainer.component
    trainer = component.factory(recipe.trainer.options, context)
    check_trainer_contract(trainer, f"trainer {component.name!r} (plugin {component.plugin!r})")
    return trainer


def precheck(recipe: Recipe, context: BuildContext) -> None:
    """Run the components' own cheap checks (data paths, weight files) before any work."""
    weights = recipe.run.weights
    if weights is not None and not weights.is_file():
        raise RecipeError(f"{recipe.path}: [run] weights: {weights} does not exist")
    for config in recipe.components():
        if config.component.check is not None:
            config.component.check(config.options, context)


def check_recipe(recipe: Recipe, quick: bool = False) -> list[str]:
    """Everything checkable without training: device, data (paths, files, split), model, trainer.

    ``quick`` stops after the components' own cheap checks (no image is decoded, no model built).
    """
    context = make_context(recipe, run_dir=None)
    precheck(recipe, context)
    if quick:
        return [f"device: {context.device}", "component checks passed (quick: data and model not built)"]
    data = build_data(recipe, context)
    model = build_model(recipe, context, data.class_names)
    build_trainer(recipe, context)
    build_metrics(recipe, context)
    parameters = sum(p.numel() for p in model.parameters())
    metric_names = [m.component.name for m in recipe.metrics]
    return [
        f"device: {context.device}",
        f"data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test images, "
        f"classes {list(data.class_names)}, positive class {data.positive_class!r}",
        f"model: {recipe.backbone.component.name} + {recipe.head.component.name}, {parameters:,} parameters",
        f"trainer: {recipe.trainer.component.name}; metrics: {', '.join(metric_names)}",
        *(f"data: {line}" for line in data.summary.get("lines", ())),
    ]


def load_initial_weights(recipe: Recipe, model: Any, logger: logging.Logger) -> None:
    """``[run] weights``: a whole classifier (backbone and head) to start from."""
    path = recipe.run.weights
    if path is None:
        return
    if path.suffix == ".json":
        path = read_model_info(path).weights_path
    state = read_state_dict(path)
    own = model.state_dict()
    unused = check_state_fits(
        own,
        state,
        where=f"{recipe.path}: [run] weights {path}",
        error_type=RecipeError,
        hint="give the whole classifier's weights (backbone.* and head.*) for this recipe's model",
        allow_unexpected=True,
    )
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    if unused:
        logger.warning("[run] weights %s: %d tensors not loaded (first: %s)", path, len(unused), unused[0])
    logger.info("started from the classifier weights in %s", path)
