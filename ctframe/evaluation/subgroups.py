"""The test metrics per subgroup (site, scanner, sex, age band, ...) of a table that
:mod:`ctframe.evaluation.subgroup_sources` read from a ``--subgroups CSV`` or the dataset's attributes.

A subgroup is scored like the whole test set (same metrics, threshold, calibration, and the same
stratified or cluster bootstrap, same seed) on its own rows only. It is "too small" and not scored with
fewer than :data:`MIN_IMAGES` images, with no image of some class, or (with groups) fewer than
:data:`MIN_GROUPS` groups; it is still listed with its counts. ``flagged`` names each value whose
interval excludes the whole test set's point value: one test per subgroup and metric, no correction for
the many made (docs/metrics.md, "Subgroups").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.table import Table

from ctframe.base.contracts import Metric, MetricInput
from ctframe.base.training import Predictions
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.outputs import format_estimate
from ctframe.evaluation.results import EvaluationData, EvaluationResult, jsonable
from ctframe.evaluation.scores import Scores, score
from ctframe.registry.settings import EvaluationSettings
from ctframe.storage.layout import SUBGROUPS
from ctframe.storage.rundir import RunDirectory

MIN_IMAGES = 10
MIN_GROUPS = 3


def _too_small(labels: np.ndarray, classes: int, groups: np.ndarray | None) -> str | None:
    if len(labels) < MIN_IMAGES:
        return f"fewer than {MIN_IMAGES} images"
    if len(np.unique(labels)) < classes:
        return "not every class present"
    if groups is not None and len(np.unique(groups)) < MIN_GROUPS:
        return f"fewer than {MIN_GROUPS} groups"
    return None


def _flagged(scores: Scores, overall: Scores) -> list[str]:
    """Names whose interval excludes the overall point value."""
    out = []
    for mine, whole in ((scores.estimates, overall.estimates), (scores.calibration, overall.calibration)):
        for name, estimate in mine.items():
            point = whole.get(name, Estimate(float("nan"))).value
            bounded = estimate.low is not None and estimate.high is not None and np.isfinite(point)
            if bounded and not estimate.low <= point <= estimate.high:
                out.append(name)
    return out


def model_subgroups(
    test: Predictions,
    threshold: float | None,
    data: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    settings: EvaluationSettings,
    seed: int,
    table: Mapping[str, Mapping[str, str]],
) -> dict[str, list[dict[str, Any]]]:
    """Variable -> one entry per value (sorted): counts, and unless too small the metrics and
    calibration with intervals and the flagged names. Groups in ``data.groups`` are resampled whole."""
    labels = np.asarray(test.labels)
    probabilities = np.asarray(test.probabilities, dtype=np.float64)
    ids = list(test.sample_ids)
    groups = np.asarray([data.groups[s] for s in ids]) if data.groups else None
    cut = 0.5 if threshold is None else threshold

    def scored(rows: np.ndarray, where: str, how: EvaluationSettings) -> Scores:
        inputs = MetricInput(labels[rows], probabilities[rows], data.class_names, data.positive_index, cut)
        return score(where, metrics, inputs, how, seed, None if groups is None else groups[rows])

    overall = scored(np.arange(len(ids)), "test", settings.model_copy(update={"bootstrap": 0}))
    results: dict[str, list[dict[str, Any]]] = {}
    for variable, values in table.items():
        column = np.asarray([values[s] for s in ids], dtype=object)
        entries = []
        for value in sorted(set(column)):
            rows = np.flatnonzero(column == value)
            entry: dict[str, Any] = {"value": value, "images": len(rows)}
            if groups is not None:
                entry["groups"] = len(np.unique(groups[rows]))
            reason = _too_small(labels[rows], len(data.class_names), None if groups is None else groups[rows])
            if reason is not None:
                entry["too_small"] = reason
            else:
                mine = scored(rows, f"subgroup {variable}={value}", settings)
                entry["metrics"] = {
                    n: {"title": mine.titles[n], **e.as_dict()} for n, e in mine.estimates.items()
                }
                entry["calibration"] = {n: e.as_dict() for n, e in mine.calibration.items()}
                entry["flagged"] = _flagged(mine, overall)
            entries.append(entry)
        results[variable] = entries
    return results


def subgroup_record(
    result: EvaluationResult,
    tests: Mapping[str, Predictions],
    data: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    table: Mapping[str, Mapping[str, str]],
    source: str,
) -> dict[str, Any]:
    """What ``subgroups.json`` holds: every model's subgroup results at its evaluated threshold."""
    settings, seed = result.settings, result.seed
    models = {}
    for model in result.models:
        threshold = model.threshold.value
        per = model_subgroups(tests[model.key], threshold, data, metrics, settings, seed, table)
        overall = {n: e.value for n, e in (*model.estimates.items(), *model.calibration.items())}
        models[model.key] = {
            "title": model.title,
            "threshold": threshold,
            "overall": overall,
            "variables": per,
        }
    return jsonable(
        {
            "source": source,
            "rule": {"min_images": MIN_IMAGES, "min_groups": MIN_GROUPS, "every_class": True},
            "bootstrap": {"resamples": settings.bootstrap, "confidence": settings.confidence, "seed": seed},
            "grouped": bool(data.groups),
            "unit": data.sample_unit,
            "models": models,
        }
    )


def _cell(entry: dict[str, Any], kind: str, name: str) -> str:
    found = (entry.get(kind) or {}).get(name) or {}
    if found.get("value") is None:
        return "n/a"
    bounds = (found["ci_low"], found["ci_high"]) if found.get("ci_low") is not None else ()
    text = format_estimate(Estimate(found["value"], *bounds), compact=True)
    return text.replace("\n", " *\n", 1) if name in entry.get("flagged", []) else text


def subgroup_tables(record: Mapping[str, Any]) -> list[Table]:
    """One console table per variable: rows are model and value; ``*`` marks a flagged value."""
    models = list((record.get("models") or {}).values())
    variables = list(dict.fromkeys(v for m in models for v in m["variables"]))
    tables = []
    for variable in variables:
        entries = [e for m in models for e in m["variables"][variable]]
        names = {n: v["title"] for e in entries for n, v in (e.get("metrics") or {}).items()}
        table = Table(title=f"Subgroups by {variable} (* interval excludes the overall value)")
        for column in ("Model", variable, "n", *names.values(), "ECE", "Brier"):
            table.add_column(column)
        for model in models:
            for entry in model["variables"][variable]:
                n = f"{entry['images']}" + (f"\n{entry['groups']} groups" if "groups" in entry else "")
                cells = [f"too small: {entry.get('too_small')}", *[""] * (len(names) + 1)]
                if "too_small" not in entry:
                    cells = [_cell(entry, "metrics", name) for name in names]
                    cells += [_cell(entry, "calibration", name) for name in ("ece", "brier")]
                table.add_row(model["title"], str(entry["value"]), n, *cells)
        tables.append(table)
    return tables


def evaluate_subgroups(
    result: EvaluationResult,
    tests: Mapping[str, Predictions],
    data: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    table: Mapping[str, Mapping[str, str]],
    source: str,
    run_dir: RunDirectory,
    console: Any = None,
) -> dict[str, Any]:
    """Score, write ``subgroups.json`` to ``run_dir`` and print one table per variable. ``source`` says
    where the table came from (the CSV as :func:`ctframe.base.filenames.escape_path` prints it, or
    "dataset ...")."""
    record = subgroup_record(result, tests, data, metrics, table, source)
    run_dir.write_json(SUBGROUPS, record)
    if console is not None:
        for shown in subgroup_tables(record):
            console.print(shown)
    return record
