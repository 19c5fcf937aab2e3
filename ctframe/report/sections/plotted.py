"""Sections drawn as plots: training curves, ROC and precision-recall, confusion, calibration."""

from __future__ import annotations

import math

import numpy as np

from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.report import html, plots
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.report.context import PlotWriter
from ctframe.report.sections.results import threshold
from ctframe.storage.layout import HISTORY, METRICS, PREDICTIONS, SPLIT_SUMMARY


def _fold_training(run: RunArtifacts, plot: PlotWriter) -> str:
    """A cross-validation folder: each model's folds overlaid, one colour per fold."""
    parts = []
    for key, folds in run.fold_histories.items():
        title = run.title(key)
        png = plots.fold_training_curves(title, folds)
        if png is None:
            continue
        caption = f"{title}: each fold's fold-<fold>/{HISTORY.filename(key)}, one colour per fold."
        parts.append(plot(f"training_{key}", png, f"training curves of {title} per fold", caption))
        epochs = ", ".join(f"fold {fold}: {len(rows)}" for fold, rows in folds.items())
        parts.append(html.paragraph(f"Epochs per fold: {epochs}.", "muted"))
    return "\n".join(parts)


def training(run: RunArtifacts, plot: PlotWriter) -> str:
    if not run.histories and run.fold_histories:
        return _fold_training(run, plot) or html.missing("The folds' history files have no epochs to plot.")
    if not run.histories:
        return html.missing(f"No {HISTORY.display} files: the trainer recorded no per-epoch history.")
    parts = []
    for key, rows in run.histories.items():
        title, source = run.title(key), HISTORY.filename(key)
        png = plots.training_curves(title, rows)
        if png is None:
            parts.append(html.missing(f"{source} has no rows or no 'epoch' column."))
            continue
        caption = f"{title}: from {source}, one colour per phase."
        parts.append(plot(f"training_{key}", png, f"training curves of {title}", caption))
        last = rows[-1]
        seconds = sum(number(row.get("seconds")) for row in rows if math.isfinite(number(row.get("seconds"))))
        parts.append(
            html.paragraph(
                f"{len(rows)} epochs; last epoch: train loss {number(last.get('train_loss')):.4f}, val loss "
                f"{number(last.get('val_loss')):.4f}, val accuracy {number(last.get('val_accuracy')):.4f}; "
                f"{seconds:.0f} s in total.",
                "muted",
            )
        )
    return "\n".join(parts)


def _probability_columns(row: dict) -> list[str]:
    return [c for c in row if c.startswith(PROBABILITY_PREFIX)]


def scored_models(run: RunArtifacts) -> list[plots.ScoredModel]:
    positive = run.positive_class
    models = []
    for key, rows in run.predictions.items():
        score_column = f"{PROBABILITY_PREFIX}{positive}"
        if not rows or positive is None or score_column not in rows[0] or "true_class" not in rows[0]:
            continue
        truth = np.array([row["true_class"] == positive for row in rows])
        score = np.array([number(row[score_column]) for row in rows])
        probability_columns = _probability_columns(rows[0])
        if len(probability_columns) > 2:  # more than two classes: calibration of the predicted class
            matrix = np.array([[number(row[c]) for c in probability_columns] for row in rows])
            names = [c.removeprefix(PROBABILITY_PREFIX) for c in probability_columns]
            confidence = matrix.max(axis=1)
            outcome = np.array(
                [names[i] == row["true_class"] for i, row in zip(matrix.argmax(axis=1), rows, strict=True)],
                dtype=float,
            )
        else:
            confidence, outcome = score, truth.astype(float)
        keep = np.isfinite(score) & np.isfinite(confidence)
        models.append(
            plots.ScoredModel(run.title(key), truth[keep], score[keep], confidence[keep], outcome[keep])
        )
    return models


def _no_predictions() -> str:
    return f"No {PREDICTIONS.display} files: evaluation did not run."


def _predictions_missing(run: RunArtifacts) -> str | None:
    if not run.predictions:
        return _no_predictions()
    if run.positive_class is None:
        return f"The positive class is unknown: {METRICS.name} and {SPLIT_SUMMARY.name} are both missing."
    return None


def curves(run: RunArtifacts, plot: PlotWriter) -> str:
    problem = _predictions_missing(run)
    if problem:
        return html.missing(problem)
    models = scored_models(run)
    positive = str(run.positive_class)
    roc = plot(
        "roc",
        plots.roc_curves(models, positive),
        "ROC curves",
        "Test split; score = probability of the positive class; AUC in the legend.",
    )
    precision_recall = plot(
        "precision_recall",
        plots.precision_recall_curves(models, positive),
        "precision-recall curves",
        "Test split; AP = average precision (area under the step curve); dotted: chance level.",
    )
    return f"{roc}\n{precision_recall}"


def confusion(run: RunArtifacts, plot: PlotWriter) -> str:
    if not run.predictions:
        return html.missing(_no_predictions())
    parts = []
    for key, rows in run.predictions.items():
        if not rows or "predicted_class" not in rows[0]:
            parts.append(
                html.missing(f"{PREDICTIONS.filename(key)} has no rows or no predicted_class column.")
            )
            continue
        true = [row["true_class"] for row in rows]
        predicted = [row["predicted_class"] for row in rows]
        names = run.class_names or sorted(set(true) | set(predicted))
        chosen = threshold(((run.metrics or {}).get("models", {}).get(key) or {}).get("threshold"))
        parts.append(
            plot(
                f"confusion_{key}",
                plots.confusion_matrix(run.title(key), true, predicted, names),
                f"confusion matrix of {run.title(key)}",
                f"{run.title(key)}, test split, threshold {chosen}: counts and share of each true class.",
            )
        )
    return "\n".join(parts)


def reliability(run: RunArtifacts, plot: PlotWriter) -> str:
    problem = _predictions_missing(run)
    if problem:
        return html.missing(problem)
    models = scored_models(run)
    several = any(len(_probability_columns((rows[:1] or [{}])[0])) > 2 for rows in run.predictions.values())
    what = "probability of the predicted class" if several else f"probability of {run.positive_class!r}"
    return plot(
        "reliability",
        plots.reliability_diagram(models, run.calibration_bins, what),
        "reliability diagram",
        f"Test split, {what}, {run.calibration_bins} equal-width bins; points on the diagonal are perfectly "
        "calibrated. ECE = sample-weighted mean gap between the points and the diagonal.",
    )
