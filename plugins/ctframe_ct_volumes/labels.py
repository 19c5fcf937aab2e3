"""The class of each volume: from a labels CSV keyed by patient, study, series or path, or from the
class folder a volume lies in. Errors name CSV rows and pseudonyms, never the raw ids."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ctframe import DataError
from ctframe_ct_volumes.volumes import Volume

KEY_COLUMNS = {"patient": "patient_id", "study": "study_id", "series": "series_id", "path": "path"}
LABEL_COLUMN = "label"
SHOWN_ROWS = 10


def _rows(numbers: Sequence[int]) -> str:
    shown = ", ".join(map(str, numbers[:SHOWN_ROWS]))
    return shown + (f" and {len(numbers) - SHOWN_ROWS} more" if len(numbers) > SHOWN_ROWS else "")


def _normal(key: str, label_key: str) -> str:
    key = key.strip()
    if label_key == "path":
        key = key.replace("\\", "/").strip("/")
        while key.startswith("./"):
            key = key[2:]
    return key


def read_table(path: Path, label_key: str, classes: Sequence[str]) -> dict[str, tuple[str, int]]:
    """CSV key -> (class, row number); DataError (one line) for a malformed table."""
    column = KEY_COLUMNS[label_key]
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read the labels file {path}: {error}") from None
    if column not in header or LABEL_COLUMN not in header:
        raise DataError(f"the labels file {path} needs the columns {column} and {LABEL_COLUMN} (label_key)")
    table: dict[str, tuple[str, int]] = {}
    unknown, empty, conflicts = [], [], []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        key, label = _normal(row[column] or "", label_key), (row[LABEL_COLUMN] or "").strip()
        if not key:
            empty.append(number)
        elif label not in classes:
            unknown.append(number)
        elif key in table and table[key][0] != label:
            conflicts.append(f"{table[key][1]} and {number}")
        elif key not in table:
            table[key] = (label, number)
    if empty:
        raise DataError(f"{path} rows {_rows(empty)} have no {column}")
    if unknown:
        raise DataError(
            f"{path} rows {_rows(unknown)} give a label that is not one of classes {list(classes)}"
        )
    if conflicts:
        raise DataError(f"{path} gives one {column} two labels in rows {_rows(conflicts)}")
    return table


def _from_folders(volumes: Sequence[Volume], classes: Sequence[str]) -> list[str | None]:
    labels: list[str | None] = []
    for volume in volumes:
        top = volume.keys["path"][0].split("/")[0]
        labels.append(top if top in classes else None)
    return labels


def label_volumes(
    volumes: Sequence[Volume], labels_file: Path | None, label_key: str, classes: Sequence[str]
) -> list[str | None]:
    """The class of each volume (None: unlabelled). DataError for CSV rows naming no volume and for a
    patient whose volumes carry two classes."""
    if labels_file is None:
        found = _from_folders(volumes, classes)
    else:
        table = read_table(labels_file, label_key, classes)
        known = {key for volume in volumes for key in volume.keys[label_key]}
        missing = sorted(row for key, (_, row) in table.items() if key not in known)
        if missing:
            raise DataError(
                f"{labels_file} rows {_rows(missing)} name a {label_key} that is not under the root; "
                "fix or remove them"
            )
        found = []
        for volume in volumes:
            hits = [table[key][0] for key in volume.keys[label_key] if key in table]
            found.append(hits[0] if hits else None)
    classes_of: dict[str, set[str]] = defaultdict(set)
    for volume, label in zip(volumes, found, strict=True):
        if label is not None:
            classes_of[volume.patient].add(label)
    mixed = sorted(patient for patient, seen in classes_of.items() if len(seen) > 1)
    if mixed:
        raise DataError(
            f"patient(s) {', '.join(mixed[:SHOWN_ROWS])} have series of two classes; a patient's series "
            "must share one label"
        )
    return found
