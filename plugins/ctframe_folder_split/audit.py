"""``ctframe audit ROOT`` on class folders: counts, formats, duplicates, groups, shortcuts, leakage."""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ctframe import AuditReport, AuditSection, CtframeError, RecipeError
from ctframe_folder_split.components import chaining_warnings, group_structure
from ctframe_folder_split.files import check_layout, discover, sniff_format
from ctframe_folder_split.grouping import listing
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.pixels import PixelStatisticsStore
from ctframe_folder_split.scan import Record, scan
from ctframe_folder_split.shortcut import (
    file_sizes,
    metadata_shortcuts,
    pixel_shortcuts,
    subpopulation_shortcuts,
)

AUDIT_OPTIONS = (
    "classes",
    "image_size",
    "group_by",
    "group_column",
    "sequence_pattern",
    "group_threshold",
    "leakage_threshold",
    "link_near_copies",
    "max_group_share",
    "max_image_pixels",
    "num_workers",
)
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


def _looks_like_images(folder: Path, probe: int = 20) -> bool:
    """Whether one of the first ``probe`` files under ``folder`` (recursively) starts like an image."""
    checked = 0
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            if checked >= probe:
                return False
            if name.startswith("."):
                continue
            checked += 1
            try:
                with open(Path(directory) / name, "rb") as handle:
                    if sniff_format(handle.read(16)):
                        return True
            except OSError:
                continue
    return False


def detect_classes(root: Path) -> tuple[list[str], list[str]] | None:
    """``(classes, ignored folders)``, or ``None`` when ``root`` is not a class-folder layout.

    Two or more sub-folders with images: those are the classes, the others are listed as ignored. Only
    one: the other sub-folders are meant as classes too but hold no image, so they stay in as classes
    and the audit names them (an empty one is an error, one of unusable files a report).
    """
    if not root.is_dir():
        return None
    folders = [p.name for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    with_images = [name for name in folders if _looks_like_images(root / name)]
    if len(with_images) >= 2:
        return with_images, [name for name in folders if name not in with_images]
    if len(with_images) == 1 and len(folders) >= 2:
        return folders, []
    return None


def _options(root: Path, given: dict[str, Any]) -> tuple[FolderSplitOptions, list[str]] | None:
    unknown = sorted(set(given) - set(AUDIT_OPTIONS))
    if unknown:
        raise RecipeError(f"unknown audit option(s) {', '.join(unknown)}; known: {', '.join(AUDIT_OPTIONS)}")
    values = dict(given)
    classes = values.pop("classes", None)
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    ignored: list[str] = []
    if not classes:
        detected = detect_classes(root)
        if detected is None:
            return None
        classes, ignored = detected
    try:
        options = FolderSplitOptions(root=root, classes=classes, positive_class=classes[0], **values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise RecipeError(f"audit option {where}: {first['msg']}") from None
    return options, ignored


def _per_class_table(title: str, key: str, records: Sequence[Record], classes: Sequence[str]) -> AuditSection:
    counts: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        counts[getattr(record.info, key)][record.entry.class_name] += 1
    rows = [[value, *(counts[value][c] for c in classes)] for value in sorted(counts)]
    return AuditSection(title, [key, *classes], rows)


def _size_table(records: Sequence[Record], classes: Sequence[str], sizes: np.ndarray) -> AuditSection:
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


def _duplicates(records: Sequence[Record]) -> tuple[AuditSection, list[str]]:
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


def _extension_mismatches(records: Sequence[Record]) -> list[list[Any]]:
    rows = []
    for record in records:
        expected = EXTENSION_FORMAT.get(record.entry.path.suffix.lower())
        if record.info is not None and expected != record.info.format:
            rows.append([record.entry.sample_id, record.entry.path.suffix or "(none)", record.info.format])
    return rows


def _group_labels(options: FolderSplitOptions, records: Sequence[Record]) -> tuple[list[str | None], dict]:
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


def _final_groups(options: FolderSplitOptions, records: Sequence[Record], labels: Sequence[str | None]):
    """Items for the split and the final group per record (labels merged with exact duplicates)."""
    from ctframe_folder_split.split import Item, build_groups

    items = [
        Item(r.entry.sample_id, r.sha256, options.classes.index(r.entry.class_name), label)
        for r, label in zip(records, labels, strict=True)
    ]
    names = [""] * len(items)
    for group in build_groups(items, 0):
        for index in group.members:
            names[index] = group.name
    return items, names


def _groups_section(
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


def _leakage(
    options: FolderSplitOptions, records: Sequence[Record], labels: Sequence[str | None]
) -> tuple[AuditSection, list[str]]:
    """The leakage check on an image-level split and on a grouped split of the same files."""
    from ctframe_folder_split.leakage import leakage_check
    from ctframe_folder_split.split import assign_splits

    grouping = options.group_by or "sequence"
    vectors = {r.entry.sample_id: r.thumbnail for r in records}
    classes = {r.entry.sample_id: r.entry.class_name for r in records}
    rows = []
    warnings = []
    for title, group_labels in (("image-level", [None] * len(records)), (f"group_by={grouping}", labels)):
        items, _ = _final_groups(options, records, group_labels)
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
        rows.append(
            [
                title,
                " / ".join(f"{per_class[c]}" for c in options.classes),
                f"{report.share_above:.1%}",
                f"{(report.chance_share or 0.0):.1%}",
                "LEAKY" if report.loud else "quiet",
                f"{closest[0]} ~ {closest[1]} ({closest[2]:.3f})",
            ]
        )
        if report.loud:
            warnings.append(
                f"the {title} split of this folder puts near-copies on both sides: {report.summary()}"
            )
    columns = [
        "split (seed 0)",
        f"groups ({' / '.join(options.classes)})",
        "test with near-copy in train",
        "chance",
        "verdict",
        "closest pair",
    ]
    return AuditSection("Near-duplicate leakage of a simulated split", columns, rows), warnings


def audit_folder(root: Path, given: dict[str, Any]) -> AuditReport | None:
    found = _options(root, given)
    if found is None:
        return None
    options, ignored = found
    classes = list(options.classes)
    timings: list[list[Any]] = []
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings.append([stage, f"{now - clock:.2f}"])
        clock = now

    check_layout(root, classes)
    entries = discover(root, classes).entries
    store = PixelStatisticsStore(len(entries), options.image_size, options.max_image_pixels)
    records = scan(entries, store, options.image_size, options.max_image_pixels, options.num_workers, True)
    lap(f"read, decode, thumbnails, pixel statistics: {len(records)} files, {options.num_workers} threads")
    good_index = [i for i, r in enumerate(records) if r.ok]
    good = [records[i] for i in good_index]
    features = store.features[good_index]
    bad = [r for r in records if not r.ok]
    warnings: list[str] = []
    if ignored:
        warnings.append(
            f"sub-folder(s) {', '.join(ignored)} hold no image and were not audited as classes; "
            "pass --set classes=... to name the classes yourself"
        )
    counts = Counter(r.entry.class_name for r in good)
    unusable = Counter(r.entry.class_name for r in bad)
    without = [c for c in classes if counts[c] == 0]
    if without:
        warnings.append(
            "class(es) "
            + ", ".join(f"{c} ({unusable[c]} unusable file(s))" for c in without)
            + " have no usable image: every class needs images; fix or replace the files "
            "(the shortcut and leakage checks need every class)"
        )
    sizes = file_sizes(good)
    sections = [
        AuditSection(
            "Files per class",
            ["class", "images", "unusable", "share"],
            [[c, counts[c], unusable[c], f"{counts[c] / max(len(good), 1):.1%}"] for c in classes],
        ),
        _per_class_table("Colour mode by class", "mode", good, classes),
        _per_class_table("Format (by content) by class", "format", good, classes),
        _size_table(good, classes, sizes),
    ]
    mismatches = _extension_mismatches(good)
    if mismatches:
        sections.append(
            AuditSection("Extension differs from content", ["file", "extension", "content"], mismatches)
        )
        warnings.append(f"{len(mismatches)} file(s) have an extension that does not match their content")
    duplicate_section, duplicate_warnings = _duplicates(good)
    sections.append(duplicate_section)
    warnings.extend(duplicate_warnings)
    if bad:
        sections.append(
            AuditSection("Unusable files", ["file", "reason"], [[r.entry.sample_id, r.problem] for r in bad])
        )
        warnings.append(f"{len(bad)} unusable file(s): {listing([r.entry.sample_id for r in bad], 4)}")
    lap("tables")
    if without:
        sections.append(AuditSection("Audit timing", ["stage", "seconds"], timings))
        return AuditReport(_title(root, good, classes), sections, warnings)

    labels: list[str | None] = [None] * len(good)
    links: dict = {}
    try:
        labels, links = _group_labels(options, good)
    except (CtframeError, ValueError) as error:  # e.g. a group_by that does not fit: report the rest
        warnings.append(f"grouping skipped, every image counts as its own group: {error}")
    _, groups = _final_groups(options, good, labels)
    groups_section, group_warnings = _groups_section(options, good, groups, links)
    sections.append(groups_section)
    warnings.extend(group_warnings)
    lap("grouping")
    for audit in (
        lambda: metadata_shortcuts(good, groups),
        lambda: pixel_shortcuts(good, features, groups),
        lambda: subpopulation_shortcuts(good, features, groups, classes),
    ):
        section, found_warnings = audit()
        sections.append(section)
        warnings.extend(found_warnings)
        lap(section.title.split(":")[0].split(" (")[0].lower())
    if all(counts[c] >= 3 for c in classes):
        try:
            leakage_section, leakage_warnings = _leakage(options, good, labels)
        except (CtframeError, ValueError) as error:  # e.g. too few groups to split: report the rest
            warnings.append(f"leakage check skipped: {error}")
        else:
            sections.append(leakage_section)
            warnings.extend(leakage_warnings)
        lap("leakage check of two simulated splits")
    sections.append(AuditSection("Audit timing", ["stage", "seconds"], timings))
    return AuditReport(_title(root, good, classes), sections, warnings)


def _title(root: Path, good: Sequence[Record], classes: Sequence[str]) -> str:
    return f"Audit of {root} ({len(good)} images, {len(classes)} classes: {', '.join(classes)})"
