"""``--subgroups CSV``: the test metrics per subgroup (site, scanner, sex, age band, ...).

The CSV is keyed by file (a ``file`` column, matched to predicted files as ``--groups`` matches them:
:mod:`ctframe.evaluation.given_groups`), else by ``sample_id`` (exactly; a ct_volumes run's
``volumes_manifest.csv`` works as it is), else by group (a ``group`` or ``patient_id``, ``study_id``, ...
column, matched exactly to the predictions' groups). The chosen columns, or by default every column that
is none of those keys, are the subgroup variables. A blank cell is the value ``(blank)``. Every predicted
file (or group) needs a row; rows naming nothing predicted are ignored.

A subgroup is scored like the whole test set (same metrics, threshold, calibration, and the same
stratified or cluster bootstrap, same seed) on its own rows only. It is "too small" and not scored with
fewer than :data:`MIN_IMAGES` images, with no image of some class, or (with groups) fewer than
:data:`MIN_GROUPS` groups; it is still listed with its counts. ``flagged`` names each value whose
interval excludes the whole test set's point value: one test per subgroup and metric, no correction for
the many made (docs/metrics.md, "Subgroups").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from ctframe.base.contracts import Metric, MetricInput
from ctframe.base.errors import DataError
from ctframe.base.filenames import ensure_escaped, escape_path
from ctframe.base.training import Predictions
from ctframe.evaluation import given_groups
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.outputs import format_estimate
from ctframe.evaluation.results import EvaluationData, EvaluationResult, jsonable
from ctframe.evaluation.scores import Scores, score
from ctframe.registry.settings import EvaluationSettings
from ctframe.storage.layout import SUBGROUPS
from ctframe.storage.rundir import RunDirectory

MIN_IMAGES = 10
MIN_GROUPS = 3
BLANK = "(blank)"


SAMPLE_COLUMN = "sample_id"


def _key_columns(header: list[str], shown: str) -> tuple[str, list[str]]:
    """The column that keys the rows (``file``, else ``sample_id``, else a group column), and every
    key-like column of the header (never a subgroup variable)."""
    try:
        group, _ = given_groups._group_column(header, shown)  # the same names --groups accepts
    except DataError:
        group = None
    keys = [c for c in (given_groups.FILE_COLUMN, SAMPLE_COLUMN) if c in header] + ([group] if group else [])
    if not keys:
        raise DataError(
            f"{shown}: no file, sample_id or group column (group, patient_id, ...); columns: {header[:8]}"
        )
    return keys[0], keys


def _file_keys(rows: list[dict[str, str]], files: Mapping[str, str], shown: str) -> list[list[str]]:
    """For each row, the predicted sample ids its ``file`` names (none, or one)."""
    by_name: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for sample, file in files.items():
        parts = given_groups._parts(file)
        if parts:
            by_name.setdefault(parts[-1], []).append((sample, parts))
    found = []
    for line, row in enumerate(rows, start=2):
        entry = ensure_escaped(row.get(given_groups.FILE_COLUMN) or "")
        _, samples = given_groups._matches(entry, by_name)
        if len(samples) > 1:
            raise DataError(
                f"{shown}, line {line}: {entry} matches {len(samples)} predicted files ({files[samples[0]]}, "
                f"{files[samples[1]]}); give enough of its path to tell them apart"
            )
        found.append(samples)
    return found


def subgroups_from_csv(
    path: Path, files: Mapping[str, str], groups: Mapping[str, str], columns: Sequence[str] = ()
) -> dict[str, dict[str, str]]:
    """Variable -> (sample id -> value) for every predicted sample (``files``: sample id -> file;
    ``groups``: sample id -> group, empty without groups); ``columns`` picks the variables (default:
    every column that is not a key)."""
    path, shown = Path(path), escape_path(Path(path))
    if not path.is_file():
        raise DataError(f"{shown}: subgroups file not found; --subgroups takes a CSV with a file column")
    header, rows = given_groups._rows(path)
    key, key_like = _key_columns(header, shown)
    variables = list(columns) or [c for c in header if c and c not in key_like]
    unknown = [c for c in variables if c not in header or c in key_like]
    if unknown:
        raise DataError(f"{shown}: no subgroup column {unknown[0]!r}; its columns are {header[:12]}")
    if not variables:
        raise DataError(f"{shown}: no subgroup columns beside the key; add columns such as site or scanner")
    predicted = set(files) | set(groups)
    if key == given_groups.FILE_COLUMN:
        if not any(files.values()):
            raise DataError(f"{shown}: the predictions name no files; key the CSV by sample_id or group")
        keys, what, covered = _file_keys(rows, files, shown), "file", set(files)
    elif key == SAMPLE_COLUMN:
        names = [(row.get(key) or "").strip() for row in rows]
        keys = [[name] if name in predicted else [] for name in names]
        what, covered = "sample", predicted
    else:
        if not groups:
            raise DataError(f"{shown}: keyed by {key} but the predictions have no groups; add a file column")
        members: dict[str, list[str]] = {}
        for sample, group in groups.items():
            members.setdefault(group, []).append(sample)
        keys = [members.get((row.get(key) or "").strip(), []) for row in rows]
        what, covered = key, set(groups)
    table: dict[str, dict[str, str]] = {name: {} for name in variables}
    for line, (row, samples) in enumerate(zip(rows, keys, strict=True), start=2):
        for name in variables:
            value = (row.get(name) or "").strip() or BLANK
            for sample in samples:
                if table[name].setdefault(sample, value) != value:
                    raise DataError(f"{shown}, line {line}: a second, different {name} for the same {what}")
    missing = sorted(s for s in covered if s not in table[variables[0]])
    if missing:
        first = files.get(missing[0]) or missing[0]
        raise DataError(
            f"{shown}: {len(missing)} predicted file(s) have no row (first: {first}); add a row per {what}"
        )
    return table


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
    source: Path,
    run_dir: RunDirectory,
    console: Any = None,
) -> dict[str, Any]:
    """Score, write ``subgroups.json`` to ``run_dir`` and print one table per variable."""
    record = subgroup_record(result, tests, data, metrics, table, escape_path(Path(source).absolute()))
    run_dir.write_json(SUBGROUPS, record)
    if console is not None:
        for shown in subgroup_tables(record):
            console.print(shown)
    return record
