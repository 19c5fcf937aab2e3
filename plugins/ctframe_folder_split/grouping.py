"""Group labels from ``group_by``: a CSV file (file -> group) or a regex on file names.

Exact duplicates are merged on top of these labels by the core's shared split (:mod:`ctframe.api.data`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from ctframe import DataError


def listing(items: Sequence[str], limit: int = 8) -> str:
    """``a, b, c and 12 more``: bounded, so one error line stays readable."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def groups_from_regex(sample_ids: Sequence[str], pattern: str) -> list[str]:
    compiled = re.compile(pattern)
    labels: list[str] = []
    unmatched: list[str] = []
    for sample_id in sample_ids:
        match = compiled.search(sample_id.rsplit("/", 1)[-1])
        if match is None:
            unmatched.append(sample_id)
            labels.append("")
            continue
        # Names restart per class folder ("Covid (1)", "Non-Covid (1)"), so a regex group is per class;
        # a CSV of patient ids, in contrast, is global.
        class_name = sample_id.split("/", 1)[0]
        labels.append(f"{class_name}/{match.group(1) if compiled.groups else match.group(0)}")
    if unmatched:
        raise DataError(
            f"group_by regex {pattern!r} matches no part of {len(unmatched)} file name(s): "
            f"{listing(unmatched)}; "
            "fix the pattern so every file name yields a group"
        )
    return labels


def groups_from_csv(sample_ids: Sequence[str], csv_path: Path, group_column: str) -> list[str]:
    """CSV with a ``file`` column (relative to the root, or to the class folder with a ``class`` column)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except FileNotFoundError:
        raise DataError(f"group_by file {csv_path} does not exist; fix dataset.group_by") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read group_by file {csv_path} ({error}); it must be a UTF-8 CSV") from None
    if "file" not in columns or group_column not in columns:
        raise DataError(
            f"group_by file {csv_path} needs columns 'file' and {group_column!r} "
            f"(has: {', '.join(columns) or 'none'}); "
            "set dataset.group_column to the group column"
        )
    by_path: dict[str, str] = {}
    by_name: dict[str, str | None] = {}
    for row in rows:
        file = (row["file"] or "").strip().replace("\\", "/")
        group = (row[group_column] or "").strip()
        if not file or not group:
            continue
        if row.get("class"):
            by_path[f"{row['class'].strip()}/{file}"] = group
        elif "/" in file:
            by_path[file] = group
        else:  # a bare file name: matches that name in any class folder, unless two rows disagree
            by_name[file] = group if by_name.get(file, group) == group else None
    labels: list[str] = []
    missing: list[str] = []
    for sample_id in sample_ids:
        group = by_path.get(sample_id) or by_name.get(sample_id.rsplit("/", 1)[-1])
        if group is None:
            missing.append(sample_id)
        labels.append(group or "")
    if missing:
        raise DataError(
            f"{len(missing)} file(s) have no group in {csv_path.name}: {listing(missing)}; "
            "add a row (file, group) for each"
        )
    return labels
