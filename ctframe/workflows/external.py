"""``ctframe evaluate RUN --data FOLDER_OR_RECIPE``: every model of a run on another labelled set.

All of the external data is test data. Each model keeps the threshold it chose on its own
validation split: choosing it again on the external set would measure a different model. Results
go to ``RUN/external/<name>/`` in the same files a run writes (metrics, predictions, report).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.base.errors import RunError
from ctframe.base.filenames import escape_path
from ctframe.base.training import Predictions
from ctframe.evaluation import EvaluationData, EvaluationSettings, ThresholdChoice, evaluate
from ctframe.evaluation.conformal import ConformalRule
from ctframe.evaluation.given_groups import groups_from_csv
from ctframe.evaluation.group_rule import rule_of
from ctframe.evaluation.results import ModelPredictions
from ctframe.evaluation.subgroup_sources import subgroups_from_attributes, subgroups_from_csv
from ctframe.evaluation.subgroups import evaluate_subgroups
from ctframe.registry.plugins import get_registry
from ctframe.registry.recipe import load_recipe
from ctframe.report import build_report
from ctframe.runtime.inference import predict_models_with_progress
from ctframe.runtime.loading import load_model
from ctframe.runtime.predict import PredictSettings
from ctframe.storage.layout import EXTERNAL, EXTERNAL_EVALUATION, MODELS, RECIPE, SOURCE
from ctframe.storage.modelfile import ModelInfo, models_of_run, read_model_info
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.assembly import build_metrics, make_context
from ctframe.workflows.external_sets import ExternalSet, dataset_file_set, folder_set, parse_class_map

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.registry.plugins import Registry


def _counts(predictions: Predictions, class_names: Sequence[str]) -> dict[str, int]:
    return {name: int((predictions.labels == index).sum()) for index, name in enumerate(class_names)}


def _default_name(data: Path) -> str:
    stem = data.stem if data.is_file() else data.name
    return re.sub(r"[^\w.-]+", "-", stem).strip("-") or "external"


def evaluation_folder_name(name: str | None, data: Path) -> str:
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


def data_differences(info: ModelInfo, external: ExternalSet, mapping: Mapping[str, str]) -> tuple[str, ...]:
    """How the external data differs from the model's training data, one sentence each."""
    said = []
    mapped = {data: model for data, model in mapping.items() if data != model}
    if mapped:
        pairs = ", ".join(f"{data} -> {model}" for data, model in mapped.items())
        said.append(
            f"the external classes were mapped onto the model's ({pairs}): check that each means the same "
            "finding as in training"
        )
    trained_unit = (info.metadata.get("group_rule") or {}).get("unit")
    if trained_unit and not external.groups:
        said.append(
            f"the models were trained and evaluated per {trained_unit}, but this data has no groups: results "
            f"are per image only, with intervals that treat images as independent; pass --groups CSV"
        )
    elif trained_unit and external.groups and external.group_unit != trained_unit:
        said.append(
            f"the models decide per {trained_unit} but this data is grouped per {external.group_unit}: "
            "the group results aggregate over another unit than the one their rule was chosen for"
        )
    return tuple(said)


def _stored_threshold(info: ModelInfo) -> ThresholdChoice:
    """The threshold the model chose on its own validation split, as its model file records it."""
    stored = dict(info.metadata.get("threshold_choice") or {})
    return ThresholdChoice(
        method=str(stored.get("method", "fixed")),
        value=info.threshold,
        chosen_on=stored.get("chosen_on"),
        note=None,
    )


def _all_scored(
    infos: Sequence[ModelInfo],
    external: ExternalSet,
    settings: EvaluationSettings,
    registry: Registry,
    console: Console | None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[ModelPredictions]:
    """Every model's predictions of the external images (through their shared frozen prefix once)."""
    loaded = [load_model(info.path, registry) for info in infos]
    how = PredictSettings("cpu", settings.precision, settings.batch_size, external.num_workers)
    label = "predict (" + ", ".join(info.key for info in infos) + ")"
    found = predict_models_with_progress(loaded, external.images, how, console, label, skipped)
    return [_scored(info, external, predictions) for info, predictions in zip(infos, found, strict=True)]


def _scored(info: ModelInfo, external: ExternalSet, predictions: Predictions) -> ModelPredictions:
    """One model's predictions of the external images, at its stored thresholds and group rule."""
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
        conformal=None
        if info.conformal is None
        else ConformalRule.from_record(info.conformal, info.class_names),
    )


def _subgroup_table(
    external: ExternalSet,
    csv: Path | None,
    columns: Sequence[str],
    logger: logging.Logger,
    predicted: Sequence[str] | None = None,
) -> tuple[dict[str, dict[str, str]], str]:
    """The subgroup table and its source: the CSV, else the data's own attributes (acquisition fields of
    CT series), else none. ``predicted`` restricts both to the evaluated samples."""
    files, groups = external.files, external.groups
    if predicted is not None:
        files = {s: files[s] for s in predicted if s in files}
        groups = {s: groups[s] for s in predicted if s in groups}
    if csv is not None:
        shown = escape_path(Path(csv).absolute())
        return subgroups_from_csv(csv, files, groups, columns), shown
    table, constant = subgroups_from_attributes(external.attributes, list(files))
    for variable, value in constant.items():
        logger.info("subgroups: every image has %s %s; not broken down by it", variable, value)
    return table, "the data's own attributes (the reader's)"


# keyword-only options with defaults, one per option of `ctframe evaluate`: the command's library face
def evaluate_external(
    run_path: Path,
    data: Path,
    *,
    class_map: str | None = None,
    name: str | None = None,
    on_bad_image: str = "error",
    groups: Path | None = None,
    classes: Sequence[str] = (),
    subgroups: Path | None = None,
    subgroup_columns: Sequence[str] = (),
    registry: Registry | None = None,
    console: Console | None = None,
) -> Path:
    """Evaluate every model of ``run_path`` on ``data``; returns ``RUN/external/<name>/``. With groups
    (the data's own, or the ``groups`` CSV, which wins) each model also answers per group, by its own
    stored group rule. With ``subgroups`` (a CSV) the metrics are also given per subgroup
    (:mod:`ctframe.evaluation.subgroups`)."""

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
    name = evaluation_folder_name(name, data)
    if data.suffix == ".toml":
        external = dataset_file_set(first, data, mapping, registry, recipe.run.seed, logger)
    else:
        external = folder_set(first, data, mapping, on_bad_image, registry, classes)
    if external.ignored:
        logger.warning("ignored sub-folders without image files: %s", ", ".join(external.ignored))
    for path, reason in external.skipped:
        logger.warning("skipped %s: %s", path, reason)
    if groups is not None:
        given, unit = groups_from_csv(groups, external.files)
        external = replace(external, groups=given, group_unit=unit)
    if not external.files_beyond_test:  # a CSV is checked before any image is predicted
        table, source = _subgroup_table(external, subgroups, subgroup_columns, logger)
    late: list[tuple[str, str]] | None = [] if on_bad_image == "skip" else None  # found by decoding
    scored = _all_scored(infos, external, recipe.evaluation, registry, console, late)
    if late:  # every model left out the same files: list them once, count classes from predictions
        late = list(dict.fromkeys(late))
        for path, reason in late:
            logger.warning("skipped %s: %s", path, reason)
        external = replace(external, skipped=[*external.skipped, *late], class_counts=None)
    if external.files_beyond_test:
        predicted = scored[0].test.sample_ids
        table, source = _subgroup_table(external, subgroups, subgroup_columns, logger, predicted)
    target = RunDirectory(EXTERNAL_EVALUATION.path(run_path, name))
    target.path.mkdir(parents=True, exist_ok=True)
    target.write_json(
        SOURCE,
        {
            "data": escape_path(data.absolute()),
            "class_map": mapping,
            "class_counts": dict(external.class_counts or _counts(scored[0].test, first.class_names)),
            "skipped": [list(item) for item in external.skipped],
            "ignored_folders": list(external.ignored),
            "models": [info.key for info in infos],
            "threshold": "each model's stored threshold (chosen on the run's validation split)",
            "groups": _groups_record(external, groups),
        },
    )
    data_info = EvaluationData(
        first.class_names,
        first.positive_class,
        dict(external.files),
        dict(external.groups),
        external.group_unit,
        differences=data_differences(first, external, mapping),
    )
    metrics = build_metrics(recipe, make_context(recipe, run_dir=None))
    result = evaluate(scored, data_info, metrics, recipe.evaluation, target, recipe.run.seed, console)
    if table:
        tests = {model.key: model.test for model in scored}
        evaluate_subgroups(result, tests, data_info, metrics, table, source, target, console)
    build_report(target.path)
    build_report(run_path)  # the run's report lists its external evaluations
    return target.path
