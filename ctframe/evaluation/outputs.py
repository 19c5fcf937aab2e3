"""Evaluation artifacts: predictions CSV, metrics JSON files and the console table."""

from __future__ import annotations

import csv
from collections.abc import Mapping

import numpy as np
from rich.table import Table

from ctframe.contracts import Predictions
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.results import EvaluationResult, ModelEvaluation, jsonable
from ctframe.rundir import RunDirectory, atomic_open

PREDICTIONS = "predictions_{key}.csv"
MODEL_METRICS = "metrics_{key}.json"
ALL_METRICS = "metrics.json"


def write_predictions(
    run_dir: RunDirectory,
    key: str,
    predictions: Predictions,
    predicted: np.ndarray,
    class_names: tuple[str, ...],
    positive_index: int,
    files: Mapping[str, str],
) -> None:
    """One row per test sample; ``score`` is the positive class's probability."""
    per_class = len(class_names) > 2
    header = ["sample_id", "file", "true_label", "score", "predicted_label"]
    if per_class:
        header += [f"probability_{name}" for name in class_names]
    with atomic_open(run_dir / PREDICTIONS.format(key=key)) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, sample_id in enumerate(predictions.sample_ids):
            probabilities = predictions.probabilities[row]
            record = [
                sample_id,
                files.get(sample_id, ""),
                class_names[int(predictions.labels[row])],
                f"{probabilities[positive_index]:.8g}",
                class_names[int(predicted[row])],
            ]
            if per_class:
                record += [f"{p:.8g}" for p in probabilities]
            writer.writerow(record)


def write_metrics(run_dir: RunDirectory, result: EvaluationResult) -> None:
    header = result.header()
    for model in result.models:
        run_dir.write_json(MODEL_METRICS.format(key=model.key), jsonable({**header, **model.as_dict()}))
    run_dir.write_json(ALL_METRICS, jsonable(result.as_dict()))


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
        f"Below each value: {settings.confidence:.0%} CI, stratified bootstrap of {settings.bootstrap}"
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
    table = Table(title="Test metrics", caption=_caption(result))
    table.add_column("Model", style="bold")
    for name in names:
        table.add_column(titles[name], justify="right", overflow="fold")  # fold, never hide digits
    for model in result.models:
        table.add_row(
            model.title,
            *(format_estimate(model.estimates.get(name), compact=True) for name in names),
        )
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
