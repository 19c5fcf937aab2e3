"""``split_manifest.csv``: which file went to which split, so a run can be repeated or resumed exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctframe import DataError
from ctframe.rundir import write_text
from ctframe_folder_split.grouping import listing

MANIFEST = "split_manifest.csv"
COLUMNS = ("file", "sha256", "class", "split", "group", "status")


@dataclass(frozen=True)
class ManifestRow:
    file: str
    sha256: str
    class_name: str
    split: str
    """train / val / test, or empty for a skipped file."""
    group: str
    status: str
    """``ok`` or ``skipped: <reason>``."""


def write_manifest(path: Path, rows: Sequence[ManifestRow]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow((row.file, row.sha256, row.class_name, row.split, row.group, row.status))
    return write_text(path, buffer.getvalue())


def read_manifest(path: Path) -> list[ManifestRow]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
                raise DataError(f"{path} is not a split manifest (columns {', '.join(COLUMNS)} expected)")
            rows = [
                ManifestRow(r["file"], r["sha256"], r["class"], r["split"], r["group"], r["status"])
                for r in reader
            ]
    except FileNotFoundError:
        raise DataError(f"split manifest {path} does not exist; fix dataset.reuse_manifest") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read split manifest {path} ({error})") from None
    odd = [row.file for row in rows if row.split not in ("", "train", "val", "test")]
    if odd:
        raise DataError(
            f"split manifest {path} names unknown splits for {listing(odd)}; use train, val or test"
        )
    return rows


def check_unchanged(recorded: Sequence[ManifestRow], current: Sequence[ManifestRow], where: Path) -> None:
    """Raise a :class:`DataError` naming every added, removed and modified file."""
    before = {row.file: row for row in recorded}
    now = {row.file: row for row in current}
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    modified = sorted(
        name
        for name in set(now) & set(before)
        if (now[name].sha256, now[name].class_name) != (before[name].sha256, before[name].class_name)
        or now[name].status.startswith("skipped") != before[name].status.startswith("skipped")
    )
    if not (added or removed or modified):
        return
    parts = [
        f"{len(names)} {kind} ({listing(names, 4)})"
        for kind, names in (("added", added), ("removed", removed), ("modified", modified))
        if names
    ]
    raise DataError(
        f"the data no longer matches the recorded split {where}: {'; '.join(parts)}; "
        "restore those files, or start a new run to split afresh"
    )
