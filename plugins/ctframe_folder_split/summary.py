"""What ``folder_split`` records about a split (``DataSplits.summary``, saved as ``split_summary.json``):
counts per split and class, exact duplicates, skipped files, and the groups when grouping is on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ctframe import BuildContext
from ctframe.api import escape_path
from ctframe.api.data import SPLITS
from ctframe_folder_split.components import chaining_warnings, group_structure
from ctframe_folder_split.files import Discovery
from ctframe_folder_split.manifest import ManifestRow
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.scan import Record


def split_summary(
    options: FolderSplitOptions,
    context: BuildContext,
    discovery: Discovery,
    records: Sequence[Record],
    rows: Sequence[ManifestRow],
    reused: bool,
) -> dict[str, Any]:
    """The recorded facts of every split: where the files came from, counts, duplicates, skipped files."""
    duplicates = _duplicates([record for record in records if record.ok])
    if duplicates["across_classes"]:
        context.logger.warning(
            "%d set(s) of identical files sit in more than one class folder", duplicates["across_classes"]
        )
    images, groups = _counts(rows, options.classes)
    return {
        "root": escape_path(options.root),
        "classes": list(options.classes),
        "positive_class": options.positive,
        "seed": context.seed,
        "image_size": options.image_size,
        "group_by": options.group_by,
        "reused_recorded_split": reused,
        "counts": images,
        "groups": groups,
        "duplicates": duplicates,
        "skipped": [{"file": r.entry.sample_id, "reason": r.problem} for r in records if not r.ok],
        "ignored": discovery.ignored,
    }


def grouping_summary(
    options: FolderSplitOptions,
    context: BuildContext,
    rows: Sequence[ManifestRow],
    links: dict[str, Any] | None,
) -> dict[str, Any]:
    """Groups per class, their size distribution and the largest one (from the final, merged groups)."""
    placed = [row for row in rows if row.split]
    structure = group_structure([r.class_name for r in placed], [r.group for r in placed], options.classes)
    lines = [entry.line() for entry in structure]
    for line in lines:
        context.logger.info("groups: %s", line)
    warnings = chaining_warnings(structure, options.max_group_share, options.group_by)
    for warning in warnings:
        context.logger.warning("%s", warning)
    result: dict[str, Any] = {
        "mode": options.group_by,
        "per_class": {entry.class_name: entry.to_dict() for entry in structure},
        "max_group_share": options.max_group_share,
        "lines": lines,
        "warnings": warnings,
    }
    if links is not None:
        result["links"] = links
        result["near_copy_level"] = options.leakage_threshold if options.link_near_copies else None
    return result


def _duplicates(good: Sequence[Record]) -> dict[str, Any]:
    by_sha: dict[str, list[Record]] = defaultdict(list)
    for record in good:
        by_sha[record.sha256].append(record)
    sets = [records for records in by_sha.values() if len(records) > 1]
    across = [records for records in sets if len({r.entry.class_name for r in records}) > 1]
    return {
        "sets": len(sets),
        "files": sum(len(records) for records in sets),
        "across_classes": len(across),
        "examples": [
            {"sha256": records[0].sha256, "files": [r.entry.sample_id for r in records]}
            for records in sets[:50]
        ],
    }


def _counts(rows: Sequence[ManifestRow], classes: Sequence[str]) -> tuple[dict, dict]:
    images: dict[str, dict[str, int]] = {split: dict.fromkeys(classes, 0) for split in SPLITS}
    groups: dict[str, dict[str, set[str]]] = {split: {c: set() for c in classes} for split in SPLITS}
    for row in rows:
        if row.split:
            images[row.split][row.class_name] += 1
            groups[row.split][row.class_name].add(row.group)
    group_counts = {split: {c: len(g) for c, g in per.items()} for split, per in groups.items()}
    return images, group_counts
