"""``--groups CSV``: which predicted files belong together, for ``ctframe predict`` and ``ctframe evaluate``.

The CSV has a ``file`` column and a group column: ``group``, or one that names its unit (``patient_id``,
``patient``, ``study_id``, ``series``, ...; UCSD COVID-CT's ``patients.csv`` works as it is), which also
names the group-level results ("patient"). A row's file matches a predicted file when the shorter of the
two paths is the end of the longer, compared by whole parts: ``x.png``, ``CT_COVID/x.png`` and
``/data/CT_COVID/x.png`` all match the predicted ``data/CT_COVID/x.png``. Every predicted file needs a row;
rows naming files that were not predicted are ignored (one CSV may list a whole dataset).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ctframe.base.errors import DataError
from ctframe.base.filenames import ensure_escaped, escape_path

logger = logging.getLogger("ctframe")

FILE_COLUMN = "file"
GROUP_COLUMN = "group"
UNIT_COLUMNS = ("patient", "subject", "case", "study", "scan", "series")
"""Group columns that name their unit, each also with an ``_id`` ending (``patient_id``)."""


def _group_column(header: list[str], shown: str) -> tuple[str, str]:
    """The group column and the unit it names."""
    if GROUP_COLUMN in header:
        return GROUP_COLUMN, "group"
    for unit in UNIT_COLUMNS:
        for column in (f"{unit}_id", unit):
            if column in header:
                return column, unit
    named = ", ".join([GROUP_COLUMN, *(f"{unit}_id" for unit in UNIT_COLUMNS)])
    raise DataError(f"{shown}: no group column (one of {named}); found columns {header[:8]}")


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    shown = escape_path(path)
    if not path.is_file():
        raise DataError(f"{shown}: groups file not found; --groups takes a CSV with file and group columns")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            return list(reader.fieldnames or []), list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{shown}: not a readable CSV file ({error})") from None


def _parts(text: str) -> tuple[str, ...]:
    return tuple(part for part in PurePosixPath(text).parts if part != "/")  # "./a" is ("a",) already


def _ends_alike(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    shorter = min(len(one), len(other))
    return one[-shorter:] == other[-shorter:]


def _matches(
    entry: str, by_name: Mapping[str, list[tuple[str, tuple[str, ...]]]]
) -> tuple[tuple[str, ...], list[str]]:
    parts = _parts(entry)
    if not parts:
        return parts, []
    return parts, [sample for sample, file in by_name.get(parts[-1], []) if _ends_alike(parts, file)]


def groups_from_csv(path: Path, files: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Sample id -> group for every sample of ``files`` (sample id -> its file, escaped), and the unit."""
    path = Path(path)
    shown = escape_path(path)
    header, rows = _rows(path)
    if FILE_COLUMN not in header:
        raise DataError(f"{shown}: no {FILE_COLUMN!r} column; found columns {header[:8]}")
    column, unit = _group_column(header, shown)
    by_name: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for sample, file in files.items():
        parts = _parts(file)
        if parts:
            by_name.setdefault(parts[-1], []).append((sample, parts))
    groups: dict[str, str] = {}
    unused: list[str] = []
    for line, row in enumerate(rows, start=2):
        entry, group = ensure_escaped(row.get(FILE_COLUMN) or ""), (row.get(column) or "").strip()
        parts, found = _matches(entry, by_name)
        if not group and parts:
            raise DataError(f"{shown}, line {line}: {entry} has no {column}; give every file its group")
        if len(found) > 1:
            raise DataError(
                f"{shown}, line {line}: {entry} matches {len(found)} predicted files ({files[found[0]]}, "
                f"{files[found[1]]}); give enough of its path to tell them apart"
            )
        if not found:
            unused.append(entry)
            continue
        earlier = groups.setdefault(found[0], group)
        if earlier != group:
            raise DataError(
                f"{shown}, line {line}: {entry} is in {column} {group!r} and, on an earlier line, in "
                f"{earlier!r}; give each file one group"
            )
    missing = [sample for sample in files if sample not in groups]
    if missing:
        raise DataError(
            f"{shown}: {len(missing)} predicted file(s) have no row (first: {files[missing[0]]}); add a "
            f"{FILE_COLUMN},{column} row for each, or predict only the files it lists"
        )
    if unused:
        logger.info(
            "%s: %d row(s) name files not predicted (first: %s); ignored", shown, len(unused), unused[0]
        )
    return groups, unit
