"""``ctframe audit ROOT`` for class-folder layouts: counts, formats, duplicates, shortcuts, leakage."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ctframe import AuditReport, AuditSection, CtframeError, RecipeError
from ctframe_folder_split.cache import NoStore
from ctframe_folder_split.files import discover, sniff_format
from ctframe_folder_split.grouping import listing
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.scan import Record, scan
from ctframe_folder_split.shortcut import metadata_shortcuts

AUDIT_OPTIONS = (
    "classes",
    "image_size",
    "group_by",
    "group_column",
    "sequence_pattern",
    "group_threshold",
    "leakage_threshold",
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
    checked = 0
    for path in sorted(folder.iterdir()):
        if checked >= probe:
            break
        if path.name.startswith(".") or not path.is_file():
            continue
        checked += 1
        try:
            with open(path, "rb") as handle:
                if sniff_format(handle.read(16)):
                    return True
        except OSError:
            continue
    return False


def detect_classes(root: Path) -> list[str] | None:
    """Sub-folders holding images, or ``None`` when ``root`` is not a class-folder layout."""
    if not root.is_dir():
        return None
    classes = [p.name for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    classes = [name for name in classes if _looks_like_images(root / name)]
    return classes if len(classes) >= 2 else None


def _options(root: Path, given: dict[str, Any]) -> FolderSplitOptions | None:
    unknown = sorted(set(given) - set(AUDIT_OPTIONS))
    if unknown:
        raise RecipeError(f"unknown audit option(s) {', '.join(unknown)}; known: {', '.join(AUDIT_OPTIONS)}")
    values = dict(given)
    classes = values.pop("classes", None)
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = classes or detect_classes(root)
    if classes is None:
        return None
    try:
        return FolderSplitOptions(root=root, classes=classes, positive_class=classes[0], **values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise RecipeError(f"audit option {where}: {first['msg']}") from None


def _per_class_table(title: str, key: str, records: Sequence[Record], classes: Sequence[str]) -> AuditSection:
    counts: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        counts[getattr(record.info, key)][record.entry.class_name] += 1
    rows = [[value, *(counts[value][c] for c in classes)] for value in sorted(counts)]
    return AuditSection(title, [key, *classes], rows)


def _size_table(records: Sequence[Record], classes: Sequence[str]) -> AuditSection:
    rows = []
    for class_name in classes:
        infos = [r.info for r in records if r.entry.class_name == class_name and r.info is not None]
        if not infos:
            continue
        widths = [i.width for i in infos]
        heights = [i.height for i in infos]
        distinct = len({(i.width, i.height) for i in infos})
        common, common_count = Counter((i.width, i.height) for i in infos).most_common(1)[0]
        rows.append(
            [
                class_name,
                f"{min(widths)}-{statistics.median(widths):g}-{max(widths)}",
                f"{min(heights)}-{statistics.median(heights):g}-{max(heights)}",
                distinct,
                f"{common[0]}x{common[1]} ({common_count})",
            ]
        )
    columns = ["class", "width min-median-max", "height min-median-max", "distinct sizes", "most common"]
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


def _leakage(options: FolderSplitOptions, records: Sequence[Record]) -> tuple[AuditSection, list[str]]:
    """The leakage check on an image-level split and on a grouped split of the same files."""
    from ctframe_folder_split.grouping import groups_from_csv, groups_from_regex
    from ctframe_folder_split.leakage import leakage_check
    from ctframe_folder_split.similarity import sequence_group_labels
    from ctframe_folder_split.split import Item, assign_splits

    grouping = options.group_by or "sequence"
    ids = [r.entry.sample_id for r in records]
    if grouping == "sequence":
        labels: list[str | None] = list(sequence_group_labels(options, records))
    elif grouping.startswith("regex:"):
        labels = list(groups_from_regex(ids, grouping[len("regex:") :]))
    else:
        csv_path = options.group_csv(Path.cwd())  # on the command line, relative to where it runs
        assert csv_path is not None
        labels = list(groups_from_csv(ids, csv_path, options.group_column))
    vectors = {r.entry.sample_id: r.thumbnail for r in records}
    classes = {r.entry.sample_id: r.entry.class_name for r in records}
    rows = []
    warnings = []
    for title, group_labels in (("image-level", [None] * len(records)), (f"group_by={grouping}", labels)):
        items = [
            Item(r.entry.sample_id, r.sha256, options.classes.index(r.entry.class_name), label)
            for r, label in zip(records, group_labels, strict=True)
        ]
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
        rows.append(
            [
                title,
                len(set(groups)),
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
        "groups",
        "test with near-copy in train",
        "chance",
        "verdict",
        "closest pair",
    ]
    return AuditSection("Near-duplicate leakage of a simulated split", columns, rows), warnings


def audit_folder(root: Path, given: dict[str, Any]) -> AuditReport | None:
    options = _options(root, given)
    if options is None:
        return None
    classes = list(options.classes)
    entries = discover(root, classes).entries
    store = NoStore(options.image_size, options.max_image_pixels)
    records = scan(entries, store, options.image_size, options.max_image_pixels, options.num_workers, True)
    good = [r for r in records if r.ok]
    bad = [r for r in records if not r.ok]
    warnings: list[str] = []
    counts = Counter(r.entry.class_name for r in good)
    unusable = Counter(r.entry.class_name for r in bad)
    sections = [
        AuditSection(
            "Files per class",
            ["class", "images", "unusable", "share"],
            [[c, counts[c], unusable[c], f"{counts[c] / max(len(good), 1):.1%}"] for c in classes],
        ),
        _per_class_table("Colour mode by class", "mode", good, classes),
        _per_class_table("Format (by content) by class", "format", good, classes),
        _size_table(good, classes),
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
    shortcut_section, shortcut_warnings = metadata_shortcuts(good)
    sections.append(shortcut_section)
    warnings.extend(shortcut_warnings)
    if all(counts[c] >= 3 for c in classes):
        try:
            leakage_section, leakage_warnings = _leakage(options, good)
        except (CtframeError, ValueError) as error:  # e.g. a group_by that does not fit: report the rest
            warnings.append(f"leakage check skipped: {error}")
        else:
            sections.append(leakage_section)
            warnings.extend(leakage_warnings)
    title = f"Audit of {root} ({len(good)} images, {len(classes)} classes: {', '.join(classes)})"
    return AuditReport(title, sections, warnings)
