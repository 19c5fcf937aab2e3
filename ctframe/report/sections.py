"""The report's sections, each built from the run's files alone; a missing input is named, not fatal."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.report import html, plots
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.rundir import write_bytes


class PlotWriter:
    """Writes each plot to ``plots/<name>.png`` and returns it embedded for the page."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[Path] = []

    def __call__(self, name: str, png: bytes, alt: str, caption: str = "") -> str:
        path = write_bytes(self.folder / f"{name}.png", png)
        self.written.append(path)
        return html.image(png, alt, caption)


Section = tuple[str, str, str]


def overview(run: RunArtifacts) -> str:
    facts: list[list[Any]] = [["run directory", str(run.path)]]
    if run.status:
        facts.append(["status", run.status.get("state", "?")])
        if run.status.get("error"):
            facts.append(["error", run.status["error"]])
    if run.class_names:
        facts.append(["classes", ", ".join(run.class_names)])
    facts.append(
        ["positive class", run.positive_class or "unknown (metrics.json and split_summary.json missing)"]
    )
    facts.append(["models", ", ".join(f"{run.title(k)} ({k})" for k in run.model_keys) or "none found"])
    parts = [html.table(["item", "value"], facts)]
    if run.problems:
        parts.append(html.table(["file", "problem"], [[name, why] for name, why in run.problems.items()]))
    return "\n".join(parts)


def _estimate(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
        return "n/a"
    text = f"{entry['value']:.3f}"
    if isinstance(entry.get("ci_low"), int | float) and isinstance(entry.get("ci_high"), int | float):
        text += f" ({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"
    return text


def _signed(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
        return "n/a"
    text = f"{entry['value']:+.3f}"
    if isinstance(entry.get("ci_low"), int | float) and isinstance(entry.get("ci_high"), int | float):
        text += f" ({entry['ci_low']:+.3f} to {entry['ci_high']:+.3f})"
    return text


def _threshold(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "?"
    if entry.get("value") is None:
        return "most probable class"
    where = f", chosen on {entry['chosen_on']}" if entry.get("chosen_on") else ""
    return f"{entry['value']:.3f} ({entry.get('method', '?')}{where})"


def metrics(run: RunArtifacts) -> str:
    if not run.metrics or not isinstance(run.metrics.get("models"), dict):
        return html.missing("metrics.json is missing: evaluation did not run or did not finish.")
    models: dict[str, Any] = run.metrics["models"]
    names: dict[str, str] = {}
    for model in models.values():
        for name, entry in (model.get("metrics") or {}).items():
            names.setdefault(name, entry.get("title", name) if isinstance(entry, dict) else name)
    columns = ["Model", *names.values(), "ECE", "Brier Score", "Threshold"]
    rows = []
    for model in models.values():
        values = model.get("metrics") or {}
        calibration = model.get("calibration") or {}
        rows.append(
            [
                model.get("title", model.get("key", "?")),
                *(_estimate(values.get(n)) for n in names),
                _estimate(calibration.get("ece")),
                _estimate(calibration.get("brier")),
                _threshold(model.get("threshold")),
            ]
        )
    bootstrap = run.metrics.get("bootstrap") or {}
    if bootstrap.get("resamples"):
        interval = (
            f"In brackets: {bootstrap.get('confidence', 0.95):.0%} confidence interval from a "
            f"{bootstrap.get('method', 'bootstrap')} with {bootstrap['resamples']} resamples "
            f"(seed {bootstrap.get('seed')})."
        )
    else:
        interval = "No confidence intervals (bootstrap disabled)."
    first = next(iter(models.values()), {})
    counts = first.get("test_class_counts") or {}
    size = (
        f" ({first.get('test_samples')} samples: {', '.join(f'{k} {v}' for k, v in counts.items())})"
        if counts
        else ""
    )
    parts = [
        html.paragraph(f"Test split{size}, positive class {run.positive_class!r}. {interval}"),
        html.table(columns, rows),
    ]
    differences = [d for d in run.metrics.get("paired_differences") or [] if isinstance(d, dict)]
    if differences:
        parts.append("<h3>Paired differences</h3>")
        parts.append(
            html.paragraph(
                "Each model minus the first, on the same test samples and the same bootstrap resamples; an "
                "interval that excludes 0 indicates a difference beyond resampling noise."
            )
        )
        names = list(dict.fromkeys(n for d in differences for n in (d.get("metrics") or {})))
        titles = [((differences[0].get("metrics") or {}).get(n) or {}).get("title", n) for n in names]
        rows = [
            [d.get("title", "?"), *(_signed((d.get("metrics") or {}).get(n)) for n in names)]
            for d in differences
        ]
        parts.append(html.table(["Comparison", *titles], rows))
    for model in models.values():
        for warning in model.get("warnings") or []:
            parts.append(html.paragraph(f"Warning ({model.get('title', '?')}): {warning}", "warning"))
    return "\n".join(parts)


def training(run: RunArtifacts, plot: PlotWriter) -> str:
    if not run.histories:
        return html.missing("No history_<model>.csv files: the trainer recorded no per-epoch history.")
    parts = []
    for key, rows in run.histories.items():
        png = plots.training_curves(run.title(key), rows)
        if png is None:
            parts.append(html.missing(f"history_{key}.csv has no rows or no 'epoch' column."))
            continue
        parts.append(
            plot(
                f"training_{key}",
                png,
                f"training curves of {run.title(key)}",
                f"{run.title(key)}: from history_{key}.csv, one colour per phase.",
            )
        )
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


def _predictions_missing(run: RunArtifacts) -> str | None:
    if not run.predictions:
        return "No predictions_<model>.csv files: evaluation did not run."
    if run.positive_class is None:
        return "The positive class is unknown: metrics.json and split_summary.json are both missing."
    return None


def curves(run: RunArtifacts, plot: PlotWriter) -> str:
    problem = _predictions_missing(run)
    if problem:
        return html.missing(problem)
    models = scored_models(run)
    positive = str(run.positive_class)
    return "\n".join(
        [
            plot(
                "roc",
                plots.roc_curves(models, positive),
                "ROC curves",
                "Test split; score = probability of the positive class; AUC in the legend.",
            ),
            plot(
                "precision_recall",
                plots.precision_recall_curves(models, positive),
                "precision-recall curves",
                "Test split; AP = average precision (area under the step curve); dotted: chance level.",
            ),
        ]
    )


def confusion(run: RunArtifacts, plot: PlotWriter) -> str:
    if not run.predictions:
        return html.missing("No predictions_<model>.csv files: evaluation did not run.")
    parts = []
    for key, rows in run.predictions.items():
        if not rows or "predicted_class" not in rows[0]:
            parts.append(html.missing(f"predictions_{key}.csv has no rows or no predicted_class column."))
            continue
        true = [row["true_class"] for row in rows]
        predicted = [row["predicted_class"] for row in rows]
        names = run.class_names or sorted(set(true) | set(predicted))
        threshold = _threshold(((run.metrics or {}).get("models", {}).get(key) or {}).get("threshold"))
        parts.append(
            plot(
                f"confusion_{key}",
                plots.confusion_matrix(run.title(key), true, predicted, names),
                f"confusion matrix of {run.title(key)}",
                f"{run.title(key)}, test split, threshold {threshold}: counts and share of each true class.",
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


def external(run: RunArtifacts) -> str:
    """One table per external evaluation (``ctframe evaluate``), at each model's stored threshold."""
    from ctframe.external import EXTERNAL_DIR, external_results

    results = external_results(run.path)
    if not results:
        return html.paragraph(
            "No external evaluation yet: ctframe evaluate RUN --data FOLDER scores every model on another "
            "labelled data set at its stored threshold.",
            "muted",
        )
    parts = []
    for name, metrics in results.items():
        models = metrics.get("models", {})
        names = list(next(iter(models.values()), {}).get("metrics", {}))
        rows = [
            [model.get("title", key), model.get("test_samples", "?")]
            + [_estimate(model.get("metrics", {}).get(metric)) for metric in names]
            for key, model in models.items()
        ]
        parts.append(
            html.paragraph(
                f"{name}: all of it is test data; each model keeps its own threshold. Full report: "
                f"{EXTERNAL_DIR}/{name}/report.html"
            )
        )
        parts.append(html.table(["Model", "images", *names], rows))
    return "\n".join(parts)


def split(run: RunArtifacts) -> str:
    parts = []
    if run.split_summary is None:
        parts.append(html.missing("split_summary.json is missing: the split was not recorded."))
    else:
        parts.append(html.structure(run.split_summary))
    if run.manifest:
        counts = Counter((row.get("split", "?"), row.get("class", "?")) for row in run.manifest)
        splits = list(dict.fromkeys(s for s, _ in counts))
        classes = list(dict.fromkeys(c for _, c in counts))
        rows = [[s, *(counts[(s, c)] for c in classes), sum(counts[(s, c)] for c in classes)] for s in splits]
        parts.append("<h3>Files per split and class (split_manifest.csv)</h3>")
        parts.append(html.table(["split", *classes, "total"], rows))
    elif run.split_summary is not None:
        parts.append(
            html.paragraph("split_manifest.csv is missing: no per-file record of the split.", "muted")
        )
    return "\n".join(parts)


def recipe(run: RunArtifacts) -> str:
    if run.recipe is None:
        return html.missing("recipe.toml is missing.")
    return html.paragraph("The recipe as resolved for this run (defaults filled in):") + html.preformatted(
        run.recipe
    )


def environment(run: RunArtifacts) -> str:
    if run.environment is None:
        return html.missing("environment.json is missing.")
    return html.structure(run.environment)


def log(run: RunArtifacts) -> str:
    if run.log_tail is None:
        return html.missing("run.log is missing.")
    return html.paragraph(f"Last {len(run.log_tail)} lines of run.log:", "muted") + html.preformatted(
        "\n".join(run.log_tail)
    )


def guarded(build: Callable[[], str], what: str) -> str:
    """A section whose inputs are malformed says so instead of stopping the whole report."""
    try:
        return build()
    except Exception as error:  # a broken file must not cost the other sections
        return html.missing(f"{what} could not be built: {type(error).__name__}: {error}")
