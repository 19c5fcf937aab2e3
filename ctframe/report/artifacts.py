"""Read what a run directory holds, tolerating anything missing or unreadable.

The report is built from these files only, so ``ctframe report RUN_DIR`` can rebuild it any time.
Every reader returns ``None`` for a missing file and records why in ``RunArtifacts.problems``.
"""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from ctframe.storage import layout
from ctframe.storage.layout import EXTERNAL_EVALUATION, RunFile

RECIPE = layout.RECIPE.name
ENVIRONMENT = layout.ENVIRONMENT.name
SPLIT_SUMMARY = layout.SPLIT_SUMMARY.name
METRICS = layout.METRICS.name
STATUS = layout.STATUS.name
LOG = layout.LOG.name
HISTORY = layout.HISTORY.pattern
PREDICTIONS = layout.PREDICTIONS.pattern
GROUP_PREDICTIONS = layout.GROUP_PREDICTIONS.pattern


@dataclass
class RunArtifacts:
    """The core's files of one run directory, read once; a section gets it as ``report.run``."""

    path: Path
    recipe: str | None = None
    environment: dict[str, Any] | None = None
    split_summary: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    log_tail: list[str] | None = None
    histories: dict[str, Sequence[dict[str, str]]] = field(default_factory=dict)
    predictions: dict[str, Sequence[dict[str, str]]] = field(default_factory=dict)
    group_predictions: dict[str, Sequence[dict[str, str]]] = field(default_factory=dict)
    """Model key -> rows of its ``predictions_<key>_<unit>.csv`` (one per group), when it has one."""
    external: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Name -> ``metrics.json`` of each external evaluation (``ctframe evaluate``) under ``external/``."""
    fold_histories: dict[str, dict[str, Sequence[dict[str, str]]]] = field(default_factory=dict)
    """A cross-validation folder's model key -> fold -> rows of that fold's ``history_<key>.csv``."""
    problems: dict[str, str] = field(default_factory=dict)
    """File name -> why it could not be read (missing files are simply absent attributes)."""
    _read: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)

    # A plugin's section reads the files its plugin writes through these: tolerant like the rest,
    # read once per report however many sections ask, and a failure lands in ``problems``.
    def read_json(self, file: RunFile | str) -> dict[str, Any] | None:
        """A JSON object file of the run (a fixed-name ``RunFile`` or a relative name); ``None`` if
        missing or unreadable (then ``problems[name]`` says why)."""
        return self._cached("json", file, _read_json)

    def read_csv(self, file: RunFile | str) -> Sequence[dict[str, str]] | None:
        """A CSV file of the run as rows keyed by its header; ``None`` if missing or unreadable."""
        return self._cached("csv", file, _read_csv)

    def read_text(self, file: RunFile | str) -> str | None:
        """A UTF-8 text file of the run; ``None`` if missing or unreadable."""
        return self._cached("text", file, _read_text)

    def _cached(self, kind: str, file: RunFile | str, read: Any) -> Any:
        name = file.filename() if isinstance(file, RunFile) else file
        if (kind, name) not in self._read:
            self._read[kind, name] = read(self.path / name, self.problems)
        return self._read[kind, name]

    def component(self, section: str) -> str | None:
        """The component that the run's recipe names for ``section`` (``"dataset"``, ...), if any."""
        try:
            table = tomllib.loads(self.recipe or "").get(section)
        except tomllib.TOMLDecodeError:
            return None
        return str(table["component"]) if isinstance(table, dict) and "component" in table else None

    @property
    def model_keys(self) -> list[str]:
        """Models in evaluation order, then any others that left files behind."""
        keys = list((self.metrics or {}).get("models", {}))
        for key in [*self.predictions, *self.histories]:
            if key not in keys:
                keys.append(key)
        return keys

    def title(self, key: str) -> str:
        model = (self.metrics or {}).get("models", {}).get(key, {})
        return str(model.get("title") or key)

    @property
    def class_names(self) -> list[str] | None:
        for source in (self.metrics, self.split_summary):
            if source and isinstance(source.get("class_names"), list):
                return [str(name) for name in source["class_names"]]
        return None

    @property
    def positive_class(self) -> str | None:
        for source in (self.metrics, self.split_summary):
            if source and source.get("positive_class") is not None:
                return str(source["positive_class"])
        return None

    @property
    def calibration_bins(self) -> int:
        bins = (self.metrics or {}).get("calibration_bins")
        return int(bins) if isinstance(bins, int) and bins >= 2 else 10


def _read_json(path: Path, problems: dict[str, str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems[path.name] = f"unreadable: {error}"
        return None
    if not isinstance(value, dict):
        problems[path.name] = "unreadable: expected a JSON object"
        return None
    return value


class CsvRows(Sequence[dict[str, str]]):
    """A CSV's rows kept column by column; each row asked for is made into a dict then. A predictions
    file of millions of rows then costs its strings (a column's repeated values shared), not a
    dictionary per row, which was most of the report's memory."""

    SHARED_VALUES = 1000
    """A column shares its values while it has at most this many distinct ones (class names, thresholds)."""

    def __init__(self, header: list[str], rows: Iterator[list[str]]):
        self.header = header
        self.columns: list[list[str]] = [[] for _ in header]
        memos: list[dict[str, str] | None] = [{} for _ in header]
        for row in rows:
            if not row:  # a blank line, as csv.DictReader skips it
                continue
            for k, column in enumerate(self.columns):
                value = row[k] if k < len(row) else ""
                memo = memos[k]
                if memo is not None:
                    value = memo.setdefault(value, value)
                    if len(memo) > self.SHARED_VALUES:
                        memos[k] = None
                column.append(value)

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    @overload
    def __getitem__(self, index: int) -> dict[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, str]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, str] | list[dict[str, str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return {name: column[index] for name, column in zip(self.header, self.columns, strict=True)}


def _read_csv(path: Path, problems: dict[str, str]) -> Sequence[dict[str, str]] | None:
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            return CsvRows(header, reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems[path.name] = f"unreadable: {error}"
        return None


def _read_text(path: Path, problems: dict[str, str]) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems[path.name] = f"unreadable: {error}"
        return None


def _is_group_file(path: Path) -> bool:
    """Whether a CSV has the per-group predictions' columns (a model key may itself hold ``_``)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return {"group", "unit", "images"} <= set(header)


def read_run(path: Path, log_lines: int = 60) -> RunArtifacts:
    path = Path(path)
    run = RunArtifacts(path)
    problems = run.problems
    run.recipe = _read_text(path / RECIPE, problems)
    run.environment = _read_json(path / ENVIRONMENT, problems)
    run.split_summary = _read_json(path / SPLIT_SUMMARY, problems)
    run.metrics = _read_json(path / METRICS, problems)
    run.status = _read_json(path / STATUS, problems)
    log = _read_text(path / LOG, problems)
    run.log_tail = log.splitlines()[-log_lines:] if log is not None else None
    files = sorted(path.glob("*.csv"))
    names = {file.name for file in files}
    for file in files:
        grouped = GROUP_PREDICTIONS.fullmatch(file.name)
        if grouped and layout.PREDICTIONS.filename(grouped["key"]) in names and _is_group_file(file):
            rows = _read_csv(file, problems)  # a model's per-group answers, not a model of its own
            if rows is not None:
                run.group_predictions[grouped["key"]] = rows
            continue
        for pattern, target in ((HISTORY, run.histories), (PREDICTIONS, run.predictions)):
            match = pattern.fullmatch(file.name)
            if match:
                rows = _read_csv(file, problems)
                if rows is not None:
                    target[match["key"]] = rows
    order = {key: position for position, key in enumerate(run.model_keys)}  # evaluation order, not file order
    run.histories = dict(sorted(run.histories.items(), key=lambda item: order[item[0]]))
    run.predictions = dict(sorted(run.predictions.items(), key=lambda item: order[item[0]]))
    for name, folder in EXTERNAL_EVALUATION.find(path).items():
        external = _read_json(layout.METRICS.path(folder), {})  # one that is unreadable is left out
        if external is not None:
            run.external[name] = external
    for fold, folder in sorted(layout.CV_FOLD.find(path).items(), key=lambda item: int(item[0])):
        for file in sorted(folder.glob("*.csv")):
            match = HISTORY.fullmatch(file.name)
            rows = _read_csv(file, {}) if match else None  # a fold's damaged history is left out
            if match and rows:
                run.fold_histories.setdefault(match["key"], {})[fold] = rows
    return run


def number(text: str | None) -> float:
    """A CSV cell as a float; NaN for empty or non-numeric cells."""
    try:
        return float(text) if text not in (None, "") else float("nan")
    except ValueError:
        return float("nan")
