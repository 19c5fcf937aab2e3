"""Reading a predictions file for ``ctframe metrics``: ctframe's own layout or any tool's, row by row.

ctframe's files have ``true_class`` and one ``p_<class>`` column per class. Any other tool's file is read
by naming its columns (:class:`Columns`): the label column (class names, or 0/1 with ``classes``) and
the score column (the probability of the positive class, two classes). Rows are read one at a time and
kept as columns (labels as small integers, probabilities as float64), so memory grows by tens of bytes
a row rather than by a dictionary of strings per row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctframe.base.errors import DataError
from ctframe.base.training import Predictions
from ctframe.evaluation.group_outputs import GROUP_FILE_COLUMNS
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.evaluation.results import EvaluationData


@dataclass(frozen=True)
class Columns:
    """How to read another tool's file: ``true`` names the label column, ``score`` the positive class's
    probability; ``classes`` (two, negative first) says what labels 0 and 1 mean and which class the
    score is for (the second, unless ``--positive`` names the other)."""

    true: str | None = None
    score: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def mapped(self) -> bool:
        return bool(self.true or self.score or self.classes)


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


@dataclass
class _Single:
    """A column that must hold one value in every row that fills it (positive_class, threshold, unit)."""

    name: str
    value: str | None = None
    others: set[str] = field(default_factory=set)

    def see(self, text: str) -> None:
        if text and self.value is None:
            self.value = text
        elif text and text != self.value:
            self.others.add(text)

    def get(self, path: Path) -> str | None:
        if self.others:
            shown = ", ".join(sorted({self.value or "", *self.others})[:3])
            raise DataError(
                f"{path}: column {self.name!r} holds several values ({shown}); pass the one to use"
            )
        return self.value


def _rows(path: Path) -> Iterator[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield from csv.reader(handle)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None


def _layout(header: list[str], columns: Columns, path: Path) -> tuple[str, list[str], tuple[str, ...]]:
    """The label column, the probability columns and the classes they are for."""
    if columns.mapped:
        true, score = columns.true or "true_class", columns.score
        if score is None or len(columns.classes) != 2:
            raise DataError(
                f"{path}: another tool's file needs --score-column (the positive class's probability) and "
                "--classes NEGATIVE,POSITIVE (two names, what labels 0 and 1 mean)"
            )
        for name, option in ((true, "--true-column"), (score, "--score-column")):
            if name not in header:
                raise DataError(f"{path}: {option} {name!r} is not a column; its columns are {header[:8]}")
        return true, [score], columns.classes
    classes = tuple(c.removeprefix(PROBABILITY_PREFIX) for c in header if c.startswith(PROBABILITY_PREFIX))
    if "true_class" not in header or len(classes) < 2:
        raise DataError(
            f"{path}: a predictions file needs a 'true_class' column and one '{PROBABILITY_PREFIX}<class>' "
            f"column per class (at least two), or name another tool's columns with --true-column, "
            f"--score-column and --classes; found columns {header[:8]}"
        )
    return "true_class", [PROBABILITY_PREFIX + name for name in classes], classes


def _label(text: str, classes: tuple[str, ...], mapped: bool) -> int | None:
    if text in classes:
        return classes.index(text)
    if mapped and text.strip() in ("0", "1", "0.0", "1.0"):
        return int(float(text))
    return None


def read_predictions(
    path: Path, positive: str | None, threshold: float | None, columns: Columns | None = None
) -> ReadPredictions:
    """An image- or group-level predictions file as predictions with the facts evaluation needs."""
    path, columns = Path(path), columns or Columns()
    rows = _rows(path)
    header = next(rows, [])
    true, score_columns, classes = _layout(header, columns, path)
    where = {name: header.index(name) for name in header}
    per_group = not columns.mapped and all(column in header for column in GROUP_FILE_COLUMNS)
    singles = {name: _Single(name) for name in ("positive_class", "threshold", "unit")}
    labels, probabilities, ids, files, groups = [], [], [], {}, {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        if not row:
            continue
        cell = {name: (row[k] if k < len(row) else "") for name, k in where.items()}
        label = _label(cell[true], classes, columns.mapped)
        if label is None:
            raise DataError(f"{path}, line {number}: {true} {cell[true]!r} is not one of {list(classes)}")
        try:
            values = [float(cell[name]) for name in score_columns]
        except (TypeError, ValueError):
            raise DataError(f"{path}, line {number}: a probability is not a number") from None
        labels.append(label)
        probabilities.append(values)
        for single in singles.values():
            single.see(cell.get(single.name, ""))
        key = (
            cell.get("group") if per_group else cell.get("sample_id") or cell.get("file")
        ) or f"row{number}"
        ids.append(key)
        if not per_group:
            files[key] = cell.get("file", "")
            if "group" in where:
                groups[key] = cell.get("group", "") or key
    if not labels:
        raise DataError(f"{path}: no rows to score")
    matrix = np.asarray(probabilities, dtype=np.float64)
    if columns.mapped:
        if not ((matrix >= 0) & (matrix <= 1)).all():
            raise DataError(f"{path}: --score-column {columns.score!r} must hold probabilities in [0, 1]")
        matrix = np.concatenate([1 - matrix, matrix], axis=1)  # the score is for classes[1]
    elif (matrix < 0).any() or (matrix > 1).any() or not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-4):
        raise DataError(f"{path}: the {PROBABILITY_PREFIX}* columns must be probabilities that sum to 1")
    positive = positive or singles["positive_class"].get(path) or (classes[1] if columns.mapped else None)
    if positive is None:
        raise DataError(f"{path}: name the positive class with --positive (one of {list(classes)})")
    if positive not in classes:
        raise DataError(f"{path}: positive class {positive!r} is not one of {list(classes)}")
    if threshold is None and len(classes) == 2:
        threshold = _stored_threshold(singles["threshold"].get(path), path)
    unit = (singles["unit"].get(path) or "group") if per_group else "image"
    predictions = Predictions(tuple(ids), np.asarray(labels, dtype=np.int64), matrix)
    return ReadPredictions(classes, positive, threshold, predictions, files, groups, unit)


def _stored_threshold(text: str | None, path: Path) -> float:
    """The file's ``threshold`` column as a number in [0, 1]; 0.5 when the file has none."""
    if text is None:
        return 0.5
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise DataError(
            f"{path}: column 'threshold' holds {text!r}, not a number in [0, 1]; pass --threshold"
        )
    return value
