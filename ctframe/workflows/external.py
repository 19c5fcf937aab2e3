"""``ctframe evaluate RUN --data FOLDER_OR_RECIPE``: every model of a run on another labelled set.

All of the external data is test data. Each model keeps the threshold it chose on its own
validation split: choosing it again on the external set would measure a different model. Results
go to ``RUN/external/<name>/`` in the same files a run writes (metrics, predictions, report).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.base.contracts import BuildContext, DataSplits, Kind
from ctframe.base.errors import DataError, RunError
from ctframe.base.filenames import escape_path
from ctframe.base.training import Predictions
from ctframe.evaluation import EvaluationData, EvaluationSettings, ThresholdChoice, evaluate
from ctframe.evaluation.given_groups import groups_from_csv
from ctframe.evaluation.group_rule import rule_of
from ctframe.evaluation.results import ModelPredictions
from ctframe.registry.plugins import get_registry
from ctframe.registry.recipe import component_config, load_recipe, read_recipe_file
from ctframe.report import build_report
from ctframe.runtime.inference import file_reader, predict_with_progress
from ctframe.runtime.loading import load_model
from ctframe.runtime.predict import PredictSettings
from ctframe.storage.layout import EXTERNAL, EXTERNAL_EVALUATION, MODELS, RECIPE, SOURCE
from ctframe.storage.modelfile import ModelInfo, models_of_run, read_model_info
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.assembly import build_metrics, make_context

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.registry.plugins import Registry


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"CT_COVID=COVID,CT_NonCOVID=non-COVID"`` -> data class name -> model class name."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise DataError(
                f"--class-map expects DATA_CLASS=MODEL_CLASS pairs separated by commas, got {item!r}"
            )
        mapping[source.strip()] = target.strip()
    return mapping


@dataclass(frozen=True)
class ExternalSet:
    """Labelled external images, with labels as indices into the model's classes."""

    images: Any
    files: Mapping[str, str]
    class_counts: Mapping[str, int] | None
    """Images per model class, when known before predicting (else counted from the predictions)."""
    skipped: Sequence[tuple[str, str]]
    num_workers: int = 0
    groups: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> group (patient, series), when the data or ``--groups`` says: both levels are reported."""
    group_unit: str = "group"


class _Labelled:
    """Items of a reader's dataset with the labels the class folders give them."""

    def __init__(self, parts: Sequence[tuple[Any, int]]):
        self.index = [
            (dataset, position, label) for dataset, label in parts for position in range(len(dataset))
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int):
        dataset, position, label = self.index[item]
        image, _, sample_id = dataset[position]
        return image, label, sample_id


class _Relabelled:
    """A dataset's items with its label indices turned into the model's."""

    def __init__(self, dataset: Any, model_label: Sequence[int]):
        self.dataset, self.model_label = dataset, list(model_label)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int):
        image, label, sample_id = self.dataset[item]
        return image, self.model_label[int(label)], sample_id


def _map_classes(found: Sequence[str], model_classes: Sequence[str], mapping: Mapping[str, str]) -> dict:
    unknown_targets = sorted(set(mapping.values()) - set(model_classes))
    if unknown_targets:
        raise DataError(
            f"--class-map maps to {', '.join(map(repr, unknown_targets))}, which the model does not know; "
            f"its classes are {list(model_classes)}"
        )
    unused = sorted(set(mapping) - set(found))
    if unused:
        raise DataError(
            f"--class-map names {', '.join(map(repr, unused))}, which the data does not have: {list(found)}"
        )
    resolved = {name: mapping.get(name, name) for name in found}
    strangers = [name for name, target in resolved.items() if target not in model_classes]
    if strangers:
        example = ",".join(f"{name}={model_classes[0]}" for name in strangers)
        raise DataError(
            f"data class(es) {', '.join(map(repr, strangers))} match no class of the model "
            f"{list(model_classes)}; map them, e.g. --class-map {example}"
        )
    targets = list(resolved.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise DataError(f"two data classes map to {', '.join(map(repr, doubled))}; map each model class once")
    missing = [name for name in model_classes if name not in targets]
    if missing:
        raise DataError(
            f"the data has no images of the model's class(es) {', '.join(map(repr, missing))} "
            f"(data classes: {list(found)}); every class needs images for the metrics"
        )
    return resolved


def _folder_set(
    info: ModelInfo, folder: Path, mapping: Mapping[str, str], on_bad_image: str, registry: Registry
) -> ExternalSet:

    if not folder.is_dir():
        raise DataError(f"{escape_path(folder)}: not a folder; pass a folder with one sub-folder per class")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{escape_path(folder)} has no class sub-folders (one folder of images per class)")
    resolved = _map_classes(found, info.class_names, mapping)
    reader = file_reader(info, registry)
    parts, files, skipped, counts, workers, groups, unit = [], {}, [], {}, 0, {}, "group"
    for name in found:
        read = reader.read([folder / name], on_bad_image=on_bad_image)
        if len(read.images) == 0:
            raise DataError(f"{escape_path(folder / name)} holds no readable images")
        label = info.class_names.index(resolved[name])
        parts.append((read.images, label))
        files.update(read.files)
        skipped.extend(read.skipped)
        counts[resolved[name]] = len(read.images)
        workers = max(workers, read.num_workers)
        groups.update(read.groups)
        unit = read.group_unit if read.groups else unit
    images = _Labelled(parts)
    return ExternalSet(images, files, counts, skipped, workers, groups, unit)


def _dataset_file_set(
    info: ModelInfo, path: Path, mapping: Mapping[str, str], registry: Registry, seed: int, logger: Any
) -> ExternalSet:
    """A TOML file whose ``[dataset]`` table names any dataset component (other sections are ignored)."""

    raw = read_recipe_file(path)
    if "dataset" not in raw:
        raise DataError(f"{path}: no [dataset] table; --data takes a folder or a TOML file with one")
    config = component_config(registry, Kind.DATASET, "dataset", raw["dataset"], path)
    context = BuildContext(seed=seed, device="cpu", recipe_dir=path.parent, logger=logger)
    if config.component.check is not None:
        config.component.check(config.options, context)
    data = config.component.factory(config.options, context)
    if not isinstance(data, DataSplits):
        raise DataError(f"{path}: dataset {config.component.name!r} returned no DataSplits")
    if len(data.train) or len(data.val):
        logger.warning(
            "%s splits its data: only its test split (%d images) is evaluated; let the dataset put "
            "everything in test (folder_split: test_only = true) to use all of it",
            path,
            len(data.test),
        )
    resolved = _map_classes(list(data.class_names), info.class_names, mapping)
    images = _Relabelled(data.test, [info.class_names.index(resolved[name]) for name in data.class_names])
    groups = dict(data.groups)
    return ExternalSet(images, dict(data.files), None, (), data.num_workers, groups, data.group_unit)


def _counts(predictions: Predictions, class_names: Sequence[str]) -> dict[str, int]:
    return {name: int((predictions.labels == index).sum()) for index, name in enumerate(class_names)}


def _default_name(data: Path) -> str:
    stem = data.stem if data.is_file() else data.name
    return re.sub(r"[^\w.-]+", "-", stem).strip("-") or "external"


def _folder_name(name: str | None, data: Path) -> str:
    """The folder under ``RUN/external/`` the results go to: ``name``, else one made from ``data``."""
    name = name or _default_name(data)
    if "/" in name or "\\" in name or name in (".", ".."):  # one folder under RUN/external/
        raise RunError(f"--name {name!r}: name one folder under {EXTERNAL.display}, without separators")
    return name


def _groups_record(external: ExternalSet, csv: Path | None) -> dict[str, Any] | None:
    """What ``source.json`` says of the groups: their unit and where they came from."""
    if not external.groups:
        return None
    return {
        "unit": external.group_unit,
        "from": "the data" if csv is None else escape_path(Path(csv).absolute()),
    }


def _stored_threshold(info: ModelInfo) -> ThresholdChoice:
    """The threshold the model chose on its own validation split, as its model file records it."""
    stored = dict(info.metadata.get("threshold_choice") or {})
    return ThresholdChoice(
        method=str(stored.get("method", "fixed")),
        value=info.threshold,
        chosen_on=stored.get("chosen_on"),
        note=None,
    )


def _scored(
    info: ModelInfo,
    external: ExternalSet,
    settings: EvaluationSettings,
    registry: Registry,
    console: Console | None,
) -> ModelPredictions:
    """One model's predictions of the external images, at its stored thresholds and group rule."""
    loaded = load_model(info.path, registry)
    how = PredictSettings("cpu", settings.precision, settings.batch_size, external.num_workers)
    predictions = predict_with_progress(loaded, external.images, how, console, info.key)
    test = Predictions(predictions.sample_ids, predictions.labels, predictions.probabilities)
    rule = rule_of(info) if external.groups else None
    return ModelPredictions(
        info.key,
        info.title,
        None,
        test,
        threshold=_stored_threshold(info),
        group_threshold=None if rule is None else rule.threshold,
        aggregation=None if rule is None else rule.aggregation,
    )


# keyword-only options with defaults, one per option of `ctframe evaluate`: the command's library face
def evaluate_external(
    run_path: Path,
    data: Path,
    *,
    class_map: str | None = None,
    name: str | None = None,
    on_bad_image: str = "error",
    groups: Path | None = None,
    registry: Registry | None = None,
    console: Console | None = None,
) -> Path:
    """Evaluate every model of ``run_path`` on ``data``; returns ``RUN/external/<name>/``. With groups
    (the data's own, or the ``groups`` CSV, which wins) each model also answers per group, by its own
    stored group rule."""

    logger = logging.getLogger("ctframe")
    registry = registry or get_registry()
    run_path = Path(run_path)
    models = models_of_run(run_path)
    if not models:
        raise RunError(f"{run_path}: no models in {MODELS.display}; evaluate a completed run")
    recipe = load_recipe(RECIPE.path(run_path), registry=registry)
    infos = [read_model_info(path) for path in models]
    first = infos[0]
    mapping = parse_class_map(class_map)
    data = Path(data)
    name = _folder_name(name, data)
    if data.suffix == ".toml":
        external = _dataset_file_set(first, data, mapping, registry, recipe.run.seed, logger)
    else:
        external = _folder_set(first, data, mapping, on_bad_image, registry)
    for path, reason in external.skipped:
        logger.warning("skipped %s: %s", path, reason)
    if groups is not None:
        given, unit = groups_from_csv(groups, external.files)
        external = replace(external, groups=given, group_unit=unit)
    scored = [_scored(info, external, recipe.evaluation, registry, console) for info in infos]
    target = RunDirectory(EXTERNAL_EVALUATION.path(run_path, name))
    target.path.mkdir(parents=True, exist_ok=True)
    target.write_json(
        SOURCE,
        {
            "data": escape_path(data.absolute()),
            "class_map": mapping,
            "class_counts": dict(external.class_counts or _counts(scored[0].test, first.class_names)),
            "skipped": [list(item) for item in external.skipped],
            "models": [info.key for info in infos],
            "threshold": "each model's stored threshold (chosen on the run's validation split)",
            "groups": _groups_record(external, groups),
        },
    )
    evaluate(
        scored,
        EvaluationData(
            first.class_names,
            first.positive_class,
            dict(external.files),
            dict(external.groups),
            external.group_unit,
        ),
        build_metrics(recipe, make_context(recipe, run_dir=None)),
        recipe.evaluation,
        target,
        recipe.run.seed,
        console,
    )
    build_report(target.path)
    build_report(run_path)  # the run's report lists its external evaluations
    return target.path
