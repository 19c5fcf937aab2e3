"""``split_manifest.csv``: which file went to which split, so a run can be repeated or resumed exactly.

The ``file`` column holds sample ids: NFC, ``/``-separated and escaped by :mod:`ctframe.base.filenames`,
so any file name is one line of valid UTF-8. Reading a manifest back maps those ids to the real files
through discovery (which computes the same ids), never by rebuilding a path from the text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctframe import DataError
from ctframe.api import ensure_escaped, escape_path, unescape_name
from ctframe.api.data import write_recorded
from ctframe_folder_split.grouping import listing

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
    """Write the manifest atomically; in a run directory (``path``'s folder) its sha256 is recorded in
    the run's ``integrity.json``, so a resume refuses a manifest edited after the run wrote it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            # Sample ids arrive escaped; a raw group label or reason is escaped here, so no name breaks it.
            tuple(
                ensure_escaped(v)
                for v in (row.file, row.sha256, row.class_name, row.split, row.group, row.status)
            )
        )
    return write_recorded(path, buffer.getvalue().encode("utf-8"), Path(path).parent, kind="manifest")


def read_manifest(path: Path) -> list[ManifestRow]:
    where = escape_path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
                raise DataError(f"{where} is not a split manifest (columns {', '.join(COLUMNS)} expected)")
            rows = []
            for r in reader:
                values = [r[column] for column in COLUMNS]
                if None in values:  # a row cut short, e.g. by an interrupted copy
                    raise DataError(
                        f"split manifest {where} line {reader.line_num} has fewer than {len(COLUMNS)} "
                        "columns; restore the file or start a new run"
                    )
                rows.append(ManifestRow(*values))
    except FileNotFoundError:
        raise DataError(f"split manifest {where} does not exist; fix dataset.reuse_manifest") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read split manifest {where} ({error})") from None
    for row in rows:
        try:
            unescape_name(row.file)
        except ValueError:
            raise DataError(
                f"split manifest {where} names {row.file!r}, which is not an escaped file name "
                "(a backslash must start \\\\, \\xNN or \\uNNNN); restore the file"
            ) from None
    odd = [row.file for row in rows if row.split not in ("", "train", "val", "test")]
    if odd:
        raise DataError(
            f"split manifest {where} names unknown splits for {listing(odd)}; use train, val or test"
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
        f"the data no longer matches the recorded split {escape_path(where)}: {'; '.join(parts)}; "
        "restore those files, or start a new run to split afresh"
    )
