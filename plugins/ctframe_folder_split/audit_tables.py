"""The audit's file tables: counts, colour modes, formats, sizes, extensions, exact duplicates, bad files."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ctframe import AuditSection
from ctframe_folder_split.grouping import listing
from ctframe_folder_split.scan import Record
from ctframe_folder_split.shortcut import file_sizes

EXTENSION_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
    ".webp": "WEBP",
}


def file_sections(
    classes: Sequence[str], good: Sequence[Record], bad: Sequence[Record]
) -> tuple[list[AuditSection], list[str]]:
    """Every table about the files themselves, and the warnings they call for."""
    counts = Counter(r.entry.class_name for r in good)
    unusable = Counter(r.entry.class_name for r in bad)
    sections = [
        AuditSection(
            "Files per class",
            ["class", "images", "unusable", "share"],
            [[c, counts[c], unusable[c], f"{counts[c] / max(len(good), 1):.1%}"] for c in classes],
        ),
        per_class_table("Colour mode by class", "mode", good, classes),
        per_class_table("Format (by content) by class", "format", good, classes),
        size_table(good, classes, file_sizes(good)),
    ]
    warnings: list[str] = []
    mismatches = extension_mismatches(good)
    if mismatches:
        sections.append(
            AuditSection("Extension differs from content", ["file", "extension", "content"], mismatches)
        )
        warnings.append(f"{len(mismatches)} file(s) have an extension that does not match their content")
    duplicate_section, duplicate_warnings = duplicates(good)
    sections.append(duplicate_section)
    warnings.extend(duplicate_warnings)
    if bad:
        sections.append(
            AuditSection("Unusable files", ["file", "reason"], [[r.entry.sample_id, r.problem] for r in bad])
        )
        warnings.append(f"{len(bad)} unusable file(s): {listing([r.entry.sample_id for r in bad], 4)}")
    return sections, warnings


def per_class_table(title: str, key: str, records: Sequence[Record], classes: Sequence[str]) -> AuditSection:
    counts: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        counts[getattr(record.info, key)][record.entry.class_name] += 1
    rows = [[value, *(counts[value][c] for c in classes)] for value in sorted(counts)]
    return AuditSection(title, [key, *classes], rows)


def size_table(records: Sequence[Record], classes: Sequence[str], sizes: np.ndarray) -> AuditSection:
    rows = []
    for class_name in classes:
        chosen = [i for i, r in enumerate(records) if r.entry.class_name == class_name and r.info is not None]
        if not chosen:
            continue
        infos = [records[i].info for i in chosen]
        widths = [i.width for i in infos]
        heights = [i.height for i in infos]
        kib = sizes[chosen] / 1024
        distinct = len({(i.width, i.height) for i in infos})
        common, common_count = Counter((i.width, i.height) for i in infos).most_common(1)[0]
        rows.append(
            [
                class_name,
                f"{min(widths)}-{statistics.median(widths):g}-{max(widths)}",
                f"{min(heights)}-{statistics.median(heights):g}-{max(heights)}",
                distinct,
                f"{common[0]}x{common[1]} ({common_count})",
                f"{np.nanmin(kib):.0f}-{np.nanmedian(kib):.0f}-{np.nanmax(kib):.0f}",
            ]
        )
    columns = [
        "class",
        "width min-median-max",
        "height min-median-max",
        "distinct sizes",
        "most common",
        "file KiB min-median-max",
    ]
    return AuditSection("Image size by class", columns, rows)


def duplicates(records: Sequence[Record]) -> tuple[AuditSection, list[str]]:
    by_sha: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_sha[record.sha256].append(record)
    rows = []
    warnings = []
    within = across = 0
    for sha, members in sorted(by_sha.items(), key=lambda item: item[1][0].entry.sample_id):
        if len(members) < 2:
            continue
        classes = sorted({m.entry.class_name for m in members})
        kind = "across classes" if len(classes) > 1 else "within class"
        across += kind == "across classes"
        within += kind == "within class"
        rows.append([sha[:12], kind, ", ".join(classes), "; ".join(m.entry.sample_id for m in members)])
    if across:
        warnings.append(
            f"{across} set(s) of identical files sit in different class folders (conflicting labels); "
            "remove the wrong copies"
        )
    if within:
        warnings.append(
            f"{within} set(s) of identical files within a class; folder_split keeps each set on one side "
            "of the split, but they still weigh double in training"
        )
    return AuditSection("Exact duplicates", ["sha256", "kind", "classes", "files"], rows), warnings


def extension_mismatches(records: Sequence[Record]) -> list[list[Any]]:
    rows = []
    for record in records:
        expected = EXTENSION_FORMAT.get(record.entry.path.suffix.lower())
        if record.info is not None and expected != record.info.format:
            rows.append([record.entry.sample_id, record.entry.path.suffix or "(none)", record.info.format])
    return rows
