"""The audit's grouping tables: groups per class, and the leakage check of two simulated splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctframe import AuditSection
from ctframe_folder_split.components import chaining_warnings, group_structure
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.scan import Record


def group_labels(options: FolderSplitOptions, records: Sequence[Record]) -> tuple[list[str | None], dict]:
    """``group_by`` labels (default ``"sequence"``) per record, and the sequence links per class."""
    from ctframe_folder_split.grouping import groups_from_csv, groups_from_regex
    from ctframe_folder_split.similarity import sequence_grouping

    grouping = options.group_by or "sequence"
    ids = [r.entry.sample_id for r in records]
    if grouping == "sequence":
        labels, links = sequence_grouping(options, records)
        return list(labels), links
    if grouping.startswith("regex:"):
        return list(groups_from_regex(ids, grouping[len("regex:") :])), {}
    csv_path = options.group_csv(Path.cwd())  # on the command line, relative to where it runs
    assert csv_path is not None
    return list(groups_from_csv(ids, csv_path, options.group_column)), {}


def final_groups(options: FolderSplitOptions, records: Sequence[Record], labels: Sequence[str | None]):
    """Items for the split and the final group per record (labels merged with exact duplicates)."""
    from ctframe.api.data import Item, build_groups

    items = [
        Item(r.entry.sample_id, r.sha256, options.classes.index(r.entry.class_name), label)
        for r, label in zip(records, labels, strict=True)
    ]
    names = [""] * len(items)
    for group in build_groups(items, 0):
        for index in group.members:
            names[index] = group.name
    return items, names


def groups_section(
    options: FolderSplitOptions, records: Sequence[Record], groups: Sequence[str], links: dict
) -> tuple[AuditSection, list[str]]:
    grouping = options.group_by or "sequence"
    structure = group_structure([r.entry.class_name for r in records], groups, options.classes)
    columns = ["class", "images", "groups", "median size", "largest group", "size distribution (groups)"]
    if links:
        columns += ["runs (consecutive links)", "near-copy pairs", "runs joined by near-copies"]
    rows = []
    for entry in structure:
        row = [
            entry.class_name,
            entry.images,
            entry.groups,
            f"{entry.median_size:g}",
            f"{entry.largest} ({entry.largest_share:.1%}): {entry.largest_group}",
            ", ".join(f"{name}: {count}" for name, count in entry.sizes.items() if count),
        ]
        if links:
            stats = links.get(entry.class_name, {})
            row += [stats.get("runs", 0), stats.get("near_copy_pairs", 0), stats.get("runs_joined", 0)]
        rows.append(row)
    warnings = chaining_warnings(structure, options.max_group_share, grouping)
    level = f", near-copy level {options.leakage_threshold:g}" if links and options.link_near_copies else ""
    return AuditSection(f"Groups per class (group_by={grouping}{level})", columns, rows), warnings


def leakage_section(
    options: FolderSplitOptions, records: Sequence[Record], labels: Sequence[str | None]
) -> tuple[AuditSection, list[str]]:
    """The leakage check on an image-level split and on a grouped split of the same files."""
    grouping = options.group_by or "sequence"
    rows = []
    warnings = []
    for title, split_labels in (("image-level", [None] * len(records)), (f"group_by={grouping}", labels)):
        row, loud = _simulated_split(options, records, split_labels)
        rows.append([title, *row])
        if loud:
            warnings.append(f"the {title} split of this folder puts near-copies on both sides: {loud}")
    columns = [
        "split (seed 0)",
        f"groups ({' / '.join(options.classes)})",
        "test with near-copy in train",
        "chance",
        "verdict",
        "closest pair",
    ]
    return AuditSection("Near-duplicate leakage of a simulated split", columns, rows), warnings


def _simulated_split(
    options: FolderSplitOptions, records: Sequence[Record], labels: Sequence[str | None]
) -> tuple[list[Any], str]:
    """A seed-0 split of ``records`` grouped by ``labels``, checked for leakage: the table row after its
    title, and the check's summary when it is loud (else ``""``)."""
    from ctframe.api.data import assign_splits
    from ctframe_folder_split.leakage import leakage_check

    vectors = {r.entry.sample_id: r.thumbnail for r in records}
    classes = {r.entry.sample_id: r.entry.class_name for r in records}
    items, _ = final_groups(options, records, labels)
    splits, groups = assign_splits(items, options.classes, options.test_fraction, options.val_fraction, 0)
    test = [i.sample_id for i, s in zip(items, splits, strict=True) if s == "test"]
    train = [i.sample_id for i, s in zip(items, splits, strict=True) if s != "test"]
    report = leakage_check(
        np.stack([vectors[i] for i in test]),
        np.stack([vectors[i] for i in train]),
        test,
        train,
        level=options.leakage_threshold,
        worst=1,
        test_classes=[classes[i] for i in test],
        train_classes=[classes[i] for i in train],
    )
    closest = report.worst_pairs[0] if report.worst_pairs else ("", "", float("nan"))
    pairs = {(item.label, group) for item, group in zip(items, groups, strict=True)}
    per_class = Counter(options.classes[label] for label, _ in pairs)
    row = [
        " / ".join(f"{per_class[c]}" for c in options.classes),
        f"{report.share_above:.1%}",
        f"{(report.chance_share or 0.0):.1%}",
        "LEAKY" if report.loud else "quiet",
        f"{closest[0]} ~ {closest[1]} ({closest[2]:.3f})",
    ]
    return row, report.summary() if report.loud else ""
