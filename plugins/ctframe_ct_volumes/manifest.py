"""``volumes_manifest.csv``: one row per slice sample of a run, with its split, label, pseudonyms,
which id stood in for the patient, and the allow-listed technical fields of its series.

It holds pseudonyms and allow-listed fields only (never a raw id or a path), so it can leave the
site with the run. The file is recorded in the run's integrity.json (a resume refuses an edited one),
and a resume whose data gives different rows stops in one line instead of mixing two data sets.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctframe import DataError
from ctframe.api import escape_path
from ctframe.api.data import write_recorded
from ctframe_ct_volumes.pseudonym import allowed_fields
from ctframe_ct_volumes.run_files import VOLUMES_MANIFEST
from ctframe_ct_volumes.volumes import Volume, sample_id

ID_COLUMNS = ("sample_id", "split", "label", "patient", "patient_source", "study", "series", "slice")
COLUMNS = ID_COLUMNS + allowed_fields()
SHOWN = 4  # sample ids named in a refusal


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\\".join(map(str, value))  # DICOM's separator of multiple values
    return str(value)


def manifest_rows(
    volumes: Sequence[Volume], slices: Sequence[Sequence[int]], labels: Sequence[str], splits: Sequence[str]
) -> list[dict[str, str]]:
    """Per volume (with its selected slice indices, class name and split), one row per slice."""
    rows = []
    for volume, indices, label, split in zip(volumes, slices, labels, splits, strict=True):
        technical = {keyword: _text(value) for keyword, value in volume.technical.items()}
        for index in indices:
            row = {
                "sample_id": sample_id(volume.name, index),
                "split": split,
                "label": label,
                "patient": volume.patient,
                "patient_source": volume.patient_source,
                "study": volume.study,
                "series": volume.name,
                "slice": str(index),
            }
            rows.append(row | {keyword: technical.get(keyword, "") for keyword in allowed_fields()})
    return rows


def write_manifest(path: Path, rows: Sequence[dict[str, str]], run_dir: Any) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_recorded(path, buffer.getvalue().encode("utf-8"), run_dir, kind="manifest")


def read_manifest(path: Path) -> list[dict[str, str]]:
    where = escape_path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
                raise DataError(f"{where} is not a volumes manifest (columns {', '.join(COLUMNS)} expected)")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read the volumes manifest {where} ({error})") from None
    if any(None in row.values() or None in row for row in rows):  # a row cut short or too long
        raise DataError(f"the volumes manifest {where} has a malformed row; restore it or start a new run")
    return rows


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def check_unchanged(
    recorded: Sequence[dict[str, str]], current: Sequence[dict[str, str]], where: Path
) -> None:
    """A DataError naming added, removed and changed samples when the data no longer gives the
    recorded rows (new or removed scans, other labels, another pseudonym key, other slice rules)."""
    before = {row["sample_id"]: row for row in recorded}
    now = {row["sample_id"]: row for row in current}
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    changed = sorted(name for name in set(now) & set(before) if now[name] != before[name])
    if not (added or removed or changed):
        return
    parts = [
        f"{len(names)} slice(s) {kind} ({_listing(names)})"
        for kind, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
    raise DataError(
        f"the data no longer matches the recorded {escape_path(where)}: {'; '.join(parts)}; "
        "restore the scans, labels and pseudonym key the run used, or start a new run"
    )


def record_manifest(run_dir: Any, rows: Sequence[dict[str, str]]) -> None:
    """Write the manifest into the run directory, or, when one is there (a resume), check the data
    still gives its rows."""
    path = VOLUMES_MANIFEST.path(run_dir)
    if path.exists():
        check_unchanged(read_manifest(path), rows, path)
        return
    write_manifest(path, rows, run_dir)
