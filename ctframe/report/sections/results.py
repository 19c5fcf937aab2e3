"""Sections of numbers: test metrics, cross-validation folds, external evaluations."""

from __future__ import annotations

from typing import Any

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import CV_FOLDS, EXTERNAL_EVALUATION, METRICS, REPORT


def estimate(entry: Any) -> str:
    """``{"value", "ci_low", "ci_high"}`` as ``0.912 (0.880-0.940)``; ``n/a`` without a value."""
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


def threshold(entry: Any) -> str:
    """A model's ``threshold`` record as a phrase: value, method and where it was chosen."""
    if not isinstance(entry, dict):
        return "?"
    if entry.get("value") is None:
        return "most probable class"
    where = f", chosen on {entry['chosen_on']}" if entry.get("chosen_on") else ""
    return f"{entry['value']:.3f} ({entry.get('method', '?')}{where})"


def _interval_note(bootstrap: dict[str, Any]) -> str:
    if not bootstrap.get("resamples"):
        return "No confidence intervals (bootstrap disabled)."
    return (
        f"In brackets: {bootstrap.get('confidence', 0.95):.0%} confidence interval from a "
        f"{bootstrap.get('method', 'bootstrap')} with {bootstrap['resamples']} resamples "
        f"(seed {bootstrap.get('seed')})."
    )


def _differences(differences: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(n for d in differences for n in (d.get("metrics") or {})))
    titles = [((differences[0].get("metrics") or {}).get(n) or {}).get("title", n) for n in names]
    rows = [
        [d.get("title", "?"), *(_signed((d.get("metrics") or {}).get(n)) for n in names)] for d in differences
    ]
    return [
        "<h3>Paired differences</h3>",
        html.paragraph(
            "Each model minus the first, on the same test samples and the same bootstrap resamples; an "
            "interval that excludes 0 indicates a difference beyond resampling noise."
        ),
        html.table(["Comparison", *titles], rows),
    ]


def _group_level(models: dict[str, Any]) -> list[str]:
    """The same table per group (patient, series, ...) for the models evaluated at that level too."""
    grouped = [m for m in models.values() if isinstance(m, dict) and isinstance(m.get("group_level"), dict)]
    if not grouped:
        return []
    first = grouped[0]["group_level"]
    unit = str(first.get("unit", "group"))
    names: dict[str, str] = {}
    for model in grouped:
        for name, entry in (model["group_level"].get("metrics") or {}).items():
            names.setdefault(name, entry.get("title", name) if isinstance(entry, dict) else name)
    rows = []
    for model in grouped:
        level = model["group_level"]
        values, calibration = level.get("metrics") or {}, level.get("calibration") or {}
        rows.append(
            [
                model.get("title", model.get("key", "?")),
                *(estimate(values.get(n)) for n in names),
                estimate(calibration.get("ece")),
                estimate(calibration.get("brier")),
                threshold(level.get("threshold")),
            ]
        )
    counts = first.get("class_counts") or {}
    sizes = first.get("images_per_group") or {}
    how = first.get("aggregate") or {}
    parameter = ", ".join(f"{k} {v}" for k, v in how.items() if k != "method")
    parts = [
        html.heading(f"Per {unit}"),
        html.paragraph(
            f"One answer per {unit}: {first.get('groups')} test {unit} groups "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}), {sizes.get('min')} to {sizes.get('max')} "
            f"images each (median {sizes.get('median')}); probability = {how.get('method', '?')}"
            f"{f' ({parameter})' if parameter else ''} of the images' probabilities; intervals from "
            f"{first.get('bootstrap', 'a bootstrap over groups')}; {_group_rule(first)}."
        ),
        html.table(["Model", *names.values(), "ECE", "Brier Score", "Threshold"], rows),
    ]
    for model in grouped:
        for warning in model["group_level"].get("warnings") or []:
            parts.append(
                html.paragraph(f"Warning ({model.get('title', '?')}, per {unit}): {warning}", "warning")
            )
    return parts


def metrics(run: RunArtifacts) -> str:
    if not run.metrics or not isinstance(run.metrics.get("models"), dict):
        return html.missing(f"{METRICS.name} is missing: evaluation did not run or did not finish.")
    models: dict[str, Any] = run.metrics["models"]
    names: dict[str, str] = {}
    for model in models.values():
        for name, entry in (model.get("metrics") or {}).items():
            names.setdefault(name, entry.get("title", name) if isinstance(entry, dict) else name)
    rows = []
    for model in models.values():
        values = model.get("metrics") or {}
        calibration = model.get("calibration") or {}
        rows.append(
            [
                model.get("title", model.get("key", "?")),
                *(estimate(values.get(n)) for n in names),
                estimate(calibration.get("ece")),
                estimate(calibration.get("brier")),
                threshold(model.get("threshold")),
            ]
        )
    first = next(iter(models.values()), {})
    counts = first.get("test_class_counts") or {}
    size = (
        f" ({first.get('test_samples')} samples: {', '.join(f'{k} {v}' for k, v in counts.items())})"
        if counts
        else ""
    )
    interval = _interval_note(run.metrics.get("bootstrap") or {})
    parts = [
        html.paragraph(f"Test split{size}, positive class {run.positive_class!r}. {interval}"),
        html.table(["Model", *names.values(), "ECE", "Brier Score", "Threshold"], rows),
    ]
    parts += _group_level(models)
    differences = [d for d in run.metrics.get("paired_differences") or [] if isinstance(d, dict)]
    if differences:
        parts += _differences(differences)
    for model in models.values():
        for warning in model.get("warnings") or []:
            parts.append(html.paragraph(f"Warning ({model.get('title', '?')}): {warning}", "warning"))
    return "\n".join(parts)


def folds(run: RunArtifacts) -> str:
    """``ctframe cv`` folders only: every fold's value of each metric, with mean and sd."""
    summary = run.read_json(CV_FOLDS)
    if summary is None:
        problem = run.problems.get(CV_FOLDS.name)
        return html.missing(f"{CV_FOLDS.name} is {problem}") if problem else ""
    parts = [
        html.paragraph(
            f"{summary['folds']} stratified, group-disjoint folds; every image was tested once. The tables "
            "above are the pooled out-of-fold predictions; below, each fold on its own "
            f"({', '.join(summary['runs'])}, each with its own report)."
        )
    ]
    for key, per_metric in summary["per_fold"].items():
        columns = ["metric", *(f"fold {i}" for i in range(summary["folds"])), "mean", "sd"]
        rows = [
            [
                name,
                *(("n/a" if v is None else f"{v:.3f}") for v in entry["folds"]),
                f"{entry['mean']:.3f}",
                f"{entry['sd']:.3f}",
            ]
            for name, entry in per_metric.items()
        ]
        parts.append(html.paragraph(run.title(key).removesuffix(" (out-of-fold)")))
        parts.append(html.table(columns, rows))
    return "\n".join(parts)


def external(run: RunArtifacts) -> str:
    """One table per external evaluation (``ctframe evaluate``), at each model's stored threshold."""
    if not run.external:
        return html.paragraph(
            "No external evaluation yet: ctframe evaluate RUN --data FOLDER scores every model on another "
            "labelled data set at its stored threshold.",
            "muted",
        )
    parts = []
    for name, results in run.external.items():
        models = results.get("models", {})
        names = list(next(iter(models.values()), {}).get("metrics", {}))
        rows = [
            [model.get("title", key), model.get("test_samples", "?")]
            + [estimate(model.get("metrics", {}).get(metric)) for metric in names]
            for key, model in models.items()
        ]
        parts.append(
            html.paragraph(
                f"{name}: all of it is test data; each model keeps its own threshold. Full report: "
                f"{EXTERNAL_EVALUATION.filename(name)}/{REPORT.name}"
            )
        )
        parts.append(html.table(["Model", "images", *names], rows))
    return "\n".join(parts)


def _group_rule(level: dict) -> str:
    """How the group threshold was set, as a model's group level in metrics.json records it."""
    rule = level.get("threshold") or {}
    if rule.get("chosen_on"):
        return f"threshold chosen on the validation groups ({rule.get('method', '?')})"
    if rule.get("method") == "argmax":
        return "the most probable class decides (no threshold)"
    return "threshold fixed, not chosen on data"
