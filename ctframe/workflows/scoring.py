"""``ctframe metrics PREDICTIONS.csv``: score any predictions file with the metric plugins.

The file needs a ``true_class`` column and one ``p_<class>`` probability column per class
(ctframe's own predictions files have both; docs/metrics.md describes the format). The positive
class and the threshold come from the command line, else from the file's ``positive_class`` and
``threshold`` columns, else the threshold is 0.5. A group-level file (``predictions_<key>_<unit>.csv``:
``group``, ``unit`` and ``images`` columns) is scored one row per group, and its results say so.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctframe.base.contracts import Kind
from ctframe.base.errors import DataError
from ctframe.base.filenames import escape_path
from ctframe.base.training import Predictions
from ctframe.evaluation import EvaluationData, EvaluationSettings, ThresholdChoice, evaluate
from ctframe.evaluation.group_outputs import GROUP_FILE_COLUMNS
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.evaluation.results import ModelPredictions
from ctframe.evaluation.subgroup_sources import subgroups_from_csv
from ctframe.evaluation.subgroups import evaluate_subgroups
from ctframe.registry.plugins import get_registry
from ctframe.report import build_report
from ctframe.storage.rundir import RunDirectory

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.registry.plugins import Registry


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None


def _single(rows: Sequence[dict[str, str]], column: str, path: Path) -> str | None:
    values = {row.get(column, "") for row in rows} - {""}
    if len(values) > 1:
        shown = ", ".join(sorted(values)[:3])
        raise DataError(f"{path}: column {column!r} holds several values ({shown}); pass the one to use")
    return values.pop() if values else None


@dataclass(frozen=True)
class ReadPredictions:
    classes: tuple[str, ...]
    positive: str
    threshold: float | None
    """``None`` for more than two classes."""
    predictions: Predictions
    files: dict[str, str]
    groups: dict[str, str]
    """From an image file's ``group`` column: the confidence intervals then resample whole groups."""
    unit: str = "image"
    """What one row is: "image", or the unit of a group-level file ("patient")."""

    def data(self) -> EvaluationData:
        return EvaluationData(self.classes, self.positive, self.files, self.groups, sample_unit=self.unit)


def read_predictions(path: Path, positive: str | None, threshold: float | None) -> ReadPredictions:
    """An image- or group-level predictions file as predictions with the facts evaluation needs."""
    path = Path(path)
    header, rows = _read_rows(path)
    per_group = all(column in header for column in GROUP_FILE_COLUMNS)
    classes = tuple(c.removeprefix(PROBABILITY_PREFIX) for c in header if c.startswith(PROBABILITY_PREFIX))
    if "true_class" not in header or len(classes) < 2:
        raise DataError(
            f"{path}: a predictions file needs a 'true_class' column and one '{PROBABILITY_PREFIX}<class>' "
            f"column per class (at least two); found columns {header[:8]}"
        )
    if not rows:
        raise DataError(f"{path}: no rows to score")
    positive = positive or _single(rows, "positive_class", path)
    if positive is None:
        raise DataError(f"{path}: name the positive class with --positive (one of {list(classes)})")
    if positive not in classes:
        raise DataError(f"{path}: positive class {positive!r} has no {PROBABILITY_PREFIX}{positive} column")
    if threshold is None and len(classes) == 2:
        stored = _single(rows, "threshold", path)
        threshold = float(stored) if stored is not None else 0.5
    labels, probabilities, ids, files, groups = [], [], [], {}, {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        truth = row.get("true_class", "")
        if truth not in classes:
            raise DataError(f"{path}, line {number}: true_class {truth!r} is not one of {list(classes)}")
        try:
            values = [float(row[PROBABILITY_PREFIX + name]) for name in classes]
        except (TypeError, ValueError):
            raise DataError(f"{path}, line {number}: a probability is not a number") from None
        labels.append(classes.index(truth))
        probabilities.append(values)
        if per_group:  # one row per group already: each row is one unit of the bootstrap
            ids.append(row.get("group") or f"row{number}")
            continue
        sample_id = row.get("sample_id") or row.get("file") or f"row{number}"
        ids.append(sample_id)
        files[sample_id] = row.get("file", "")
        if "group" in header:
            groups[sample_id] = row.get("group", "") or sample_id
    matrix = np.asarray(probabilities, dtype=np.float64)
    if (matrix < 0).any() or (matrix > 1).any() or not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-4):
        raise DataError(f"{path}: the {PROBABILITY_PREFIX}* columns must be probabilities that sum to 1")
    unit = (_single(rows, "unit", path) or "group") if per_group else "image"
    predictions = Predictions(tuple(ids), np.asarray(labels), matrix)
    return ReadPredictions(classes, positive, threshold, predictions, files, groups, unit)


def _metrics(registry: Registry, names: Sequence[str]) -> list[tuple[str, object]]:
    available = registry.names(Kind.METRIC)
    chosen = list(names) or available
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise DataError(f"unknown metric(s) {', '.join(unknown)}; installed: {', '.join(available)}")
    metrics = []
    for name in chosen:
        component = registry.get(Kind.METRIC, name)
        metrics.append((name, component.factory(component.options(), None)))
    return metrics


# keyword-only options with defaults, one per option of `ctframe metrics`: the command's library face
def score_predictions(
    path: Path,
    *,
    positive: str | None = None,
    threshold: float | None = None,
    output: Path | None = None,
    metric_names: Sequence[str] = (),
    bootstrap: int = 1000,
    seed: int = 0,
    subgroups: Path | None = None,
    subgroup_columns: Sequence[str] = (),
    registry: Registry | None = None,
    console: Console | None = None,
) -> Path:
    """Metrics, bootstrap CIs, calibration and a report for one predictions file; returns the folder.
    With ``subgroups`` (a CSV keyed by file, or by group for a file with groups or a group-level file)
    also per subgroup (:mod:`ctframe.evaluation.subgroups`)."""

    path = Path(path)
    read = read_predictions(path, positive, threshold)
    table = None
    if subgroups is not None:  # a group-level file's rows are its groups
        ids = read.predictions.sample_ids
        matched = read.groups if read.unit == "image" else {sample: sample for sample in ids}
        table = subgroups_from_csv(subgroups, read.files, matched, subgroup_columns)
    key = path.stem.removeprefix("predictions_") or "model"
    title = key if read.unit == "image" else f"{key} (per {read.unit})"
    folder = RunDirectory(Path(output) if output else path.with_name(f"{path.stem}_metrics"))
    folder.path.mkdir(parents=True, exist_ok=True)
    threshold = read.threshold
    choice = ThresholdChoice("argmax", None) if threshold is None else ThresholdChoice("fixed", threshold)
    settings = EvaluationSettings(bootstrap=bootstrap)
    metrics = _metrics(registry or get_registry(), metric_names)
    model = ModelPredictions(key, title, None, read.predictions, threshold=choice)
    result = evaluate([model], read.data(), metrics, settings, folder, seed, console)
    if table is not None and subgroups is not None:
        tests = {key: read.predictions}
        shown = escape_path(Path(subgroups).absolute())
        evaluate_subgroups(result, tests, read.data(), metrics, table, shown, folder, console)
    build_report(folder.path)
    return folder.path
