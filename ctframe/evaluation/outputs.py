"""Evaluation artifacts: predictions CSV, metrics JSON files and the console table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from rich.table import Table

from ctframe.base.filenames import ensure_escaped
from ctframe.base.training import Predictions
from ctframe.evaluation.aggregate import plural
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.results import EvaluationData, EvaluationResult, ModelEvaluation, jsonable
from ctframe.storage.files import atomic_open, write_json
from ctframe.storage.layout import METRICS, MODEL_METRICS, PREDICTIONS
from ctframe.storage.rundir import RunDirectory

PROBABILITY_PREFIX = "p_"
"""Each class's probability column is named ``p_<class name>``."""


def predictions_header(
    class_names: tuple[str, ...], labelled: bool = True, grouped: bool = False, with_sets: bool = False
) -> list[str]:
    truth = ["true_class"] if labelled else []
    group = ["group"] if grouped else []
    classes = [PROBABILITY_PREFIX + name for name in class_names]
    header = ["file", "sample_id", *group, *truth, "predicted_class", "positive_class", "threshold", *classes]
    return [*header, "set"] if with_sets else header


def write_predictions_csv(
    path: Path,
    predictions: Predictions,
    predicted: np.ndarray,
    data: EvaluationData,
    threshold: float | None,
    labelled: bool = True,
    sets: list[str] | None = None,
) -> Path:
    """One row per sample: file, id, (group,) true and predicted class, the positive class and threshold
    the prediction used, one probability column per class (docs/metrics.md, predictions files) and, with
    ``sets``, the conformal prediction set ("A", "A|B", "" when empty).
    ``data`` gives the classes, the positive class, and each sample's file and group."""
    class_names, files, groups = data.class_names, data.files, data.groups
    with atomic_open(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(predictions_header(class_names, labelled, bool(groups), with_sets=sets is not None))
        positive = data.positive_class
        shown_threshold = "" if threshold is None else f"{threshold:.8g}"
        for row, sample_id in enumerate(predictions.sample_ids):
            truth = [class_names[int(predictions.labels[row])]] if labelled else []
            file = ensure_escaped(files.get(sample_id, ""))  # any bytes a file name holds, printable
            group = [ensure_escaped(groups.get(sample_id, ""))] if groups else []
            record = [file, ensure_escaped(sample_id), *group, *truth, class_names[int(predicted[row])]]
            record += [positive, shown_threshold, *(f"{p:.8g}" for p in predictions.probabilities[row])]
            writer.writerow(record if sets is None else [*record, sets[row]])
    return Path(path)


def write_predictions(
    run_dir: RunDirectory,
    key: str,
    predictions: Predictions,
    predicted: np.ndarray,
    data: EvaluationData,
    threshold: float | None = None,
    sets: list[str] | None = None,
) -> None:
    """Model ``key``'s test predictions as the run's ``predictions_<key>.csv``."""
    write_predictions_csv(PREDICTIONS.path(run_dir, key), predictions, predicted, data, threshold, sets=sets)


def write_metrics(run_dir: RunDirectory, result: EvaluationResult) -> None:
    header = result.header()
    for model in result.models:
        write_json(MODEL_METRICS.path(run_dir, model.key), jsonable({**header, **model.as_dict()}))
    write_json(METRICS.path(run_dir), jsonable(result.as_dict()))


def format_estimate(estimate: Estimate | None, digits: int = 3, compact: bool = False) -> str:
    """``0.912 (0.884-0.936)``, or compact for narrow table cells: ``0.912`` over ``0.88-0.94``."""
    if estimate is None or not np.isfinite(estimate.value):
        return "n/a"
    text = f"{estimate.value:.{digits}f}"
    if estimate.low is not None and np.isfinite(estimate.low) and estimate.high is not None:
        if compact:
            text += f"\n{estimate.low:.2f}-{estimate.high:.2f}"
        else:
            text += f" ({estimate.low:.{digits}f}-{estimate.high:.{digits}f})"
    return text


def _caption(result: EvaluationResult) -> str:
    thresholds = {model.threshold.describe() for model in result.models}
    if len(thresholds) == 1:
        threshold = f"threshold {thresholds.pop()}"
    else:
        threshold = "thresholds " + ", ".join(f"{m.title} {m.threshold.describe()}" for m in result.models)
    settings = result.settings
    interval = (
        f"Below each value: {settings.confidence:.0%} CI, {settings.bootstrap} resamples, "
        f"{result.bootstrap_method.split(' (')[0]}"
        if settings.bootstrap
        else "No confidence intervals (bootstrap = 0)"
    )
    return f"Positive class: {result.positive_class!r}; {threshold}. {interval}."


def metrics_table(result: EvaluationResult) -> Table:
    """Rows are models, columns every scalar metric in recipe order, values with their CIs."""
    names: list[str] = []
    titles: dict[str, str] = {}
    for model in result.models:
        for name in model.estimates:
            if name not in names:
                names.append(name)
                titles[name] = model.titles.get(name, name)
    title = "Test metrics" if result.unit == "image" else f"Test metrics per {result.unit}"
    table = Table(title=title, caption=_caption(result))
    table.add_column("Model", style="bold")
    for name in names:
        table.add_column(titles[name], justify="right", overflow="fold")  # fold, never hide digits
    for model in result.models:
        table.add_row(
            model.title,
            *(format_estimate(model.estimates.get(name), compact=True) for name in names),
        )
    return table


def group_metrics_table(result: EvaluationResult) -> Table | None:
    """The group-level block beside the image-level tables: rows are models, columns every scalar
    metric at each model's group threshold, laid out like the image-level table (calibration in
    :func:`group_calibration_table`); ``None`` when there are no groups."""
    grouped = [(model.title, model.group) for model in result.models if model.group is not None]
    if not grouped:
        return None
    first = grouped[0][1]
    units = plural(first.unit)
    names = list(dict.fromkeys(name for _, group in grouped for name in group.estimates))
    thresholds = {group.threshold.describe() for _, group in grouped}
    threshold = (
        f"threshold {thresholds.pop()}"
        if len(thresholds) == 1
        else "thresholds " + ", ".join(f"{title} {group.threshold.describe()}" for title, group in grouped)
    )
    settings = result.settings
    interval = (
        f"Below each value: {settings.confidence:.0%} CI, {settings.bootstrap} resamples of {units}"
        if settings.bootstrap
        else "No confidence intervals (bootstrap = 0)"
    )
    table = Table(
        title=f"Test metrics per {first.unit} ({first.groups} {units}, {first.aggregation.describe()})",
        caption=f"Positive class: {result.positive_class!r}; {threshold} on the {first.unit} probability. "
        f"{interval}.",
    )
    table.add_column("Model", style="bold")
    for name in names:
        title = next(group.titles.get(name, name) for _, group in grouped if name in group.estimates)
        table.add_column(title, justify="right", overflow="fold")
    for title, group in grouped:
        table.add_row(title, *(format_estimate(group.estimates.get(name), compact=True) for name in names))
    return table


def group_calibration_table(result: EvaluationResult) -> Table | None:
    grouped = [(model.title, model.group) for model in result.models if model.group is not None]
    if not grouped:
        return None
    table = Table(title=f"Calibration per {grouped[0][1].unit} (test)")
    table.add_column("Model", style="bold")
    table.add_column("ECE", justify="right")
    table.add_column("Brier Score", justify="right")
    for title, group in grouped:
        table.add_row(title, *(format_estimate(group.calibration.get(n)) for n in ("ece", "brier")))
    return table


def calibration_table(result: EvaluationResult) -> Table:
    table = Table(title="Calibration (test)")
    table.add_column("Model", style="bold")
    table.add_column("ECE", justify="right")
    table.add_column("Brier Score", justify="right")
    for model in result.models:
        table.add_row(
            model.title,
            format_estimate(model.calibration.get("ece")),
            format_estimate(model.calibration.get("brier")),
        )
    return table


def model_summary(model: ModelEvaluation) -> str:
    return ", ".join(
        f"{model.titles.get(name, name)} {format_estimate(e)}" for name, e in model.estimates.items()
    )
