"""``ctframe audit ROOT`` on class folders: counts, formats, duplicates, groups, shortcuts, leakage.

This module finds the classes, reads the files and runs the stages in order; the tables come from
:mod:`audit_tables` (the files) and :mod:`audit_groups` (groups and the leakage check), the shortcut
checks from :mod:`shortcut`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ctframe import AuditReport, AuditSection, CtframeError, RecipeError
from ctframe_folder_split.audit_groups import final_groups, group_labels, groups_section, leakage_section
from ctframe_folder_split.audit_tables import file_sections
from ctframe_folder_split.files import check_layout, discover, sniff_format
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.pixels import PixelStatisticsStore
from ctframe_folder_split.scan import Record, scan
from ctframe_folder_split.shortcut import metadata_shortcuts, pixel_shortcuts, subpopulation_shortcuts

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


@dataclass
class _Findings:
    """What the audit has found so far: tables, warnings, and how long each stage took."""

    sections: list[AuditSection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: list[list[Any]] = field(default_factory=list)
    clock: float = field(default_factory=time.perf_counter)

    def add(self, section: AuditSection, warnings: Sequence[str] = ()) -> None:
        self.sections.append(section)
        self.warnings.extend(warnings)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings.append([stage, f"{now - self.clock:.2f}"])
        self.clock = now

    def report(self, title: str) -> AuditReport:
        timing = AuditSection("Audit timing", ["stage", "seconds"], self.timings)
        return AuditReport(title, [*self.sections, timing], self.warnings)


def audit_folder(root: Path, given: dict[str, Any]) -> AuditReport | None:
    found = _options(root, given)
    if found is None:
        return None
    options, ignored = found
    classes = list(options.classes)
    findings = _Findings()
    good, bad, features = _read(root, options)
    files = len(good) + len(bad)
    findings.lap(f"read, decode, thumbnails, pixel statistics: {files} files, {options.num_workers} threads")
    findings.warnings.extend(_coverage_warnings(classes, ignored, good, bad))
    sections, table_warnings = file_sections(classes, good, bad)
    findings.sections.extend(sections)
    findings.warnings.extend(table_warnings)
    findings.lap("tables")
    counts = Counter(r.entry.class_name for r in good)
    if all(counts[c] > 0 for c in classes):  # the checks below compare classes: each needs images
        labels, groups = _grouping(options, good, findings)
        _shortcuts(good, features, groups, classes, findings)
        if all(counts[c] >= 3 for c in classes):
            _leakage(options, good, labels, findings)
    return findings.report(_title(root, good, classes))


def _read(root: Path, options: FolderSplitOptions) -> tuple[list[Record], list[Record], np.ndarray]:
    """Usable and unusable files, and the pixel statistics of the usable ones (in their order)."""
    check_layout(root, options.classes)
    entries = discover(root, options.classes).entries
    store = PixelStatisticsStore(len(entries), options.image_size, options.max_image_pixels)
    records = scan(entries, store, options.image_size, options.max_image_pixels, options.num_workers, True)
    good_index = [i for i, r in enumerate(records) if r.ok]
    return [records[i] for i in good_index], [r for r in records if not r.ok], store.features[good_index]


def _coverage_warnings(
    classes: Sequence[str], ignored: Sequence[str], good: Sequence[Record], bad: Sequence[Record]
) -> list[str]:
    """Sub-folders left out as classes, and classes without a usable image."""
    warnings = []
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
    return warnings


def _grouping(
    options: FolderSplitOptions, good: Sequence[Record], findings: _Findings
) -> tuple[list[str | None], list[str]]:
    """The groups table; the ``group_by`` label (``None`` everywhere when grouping failed) and the final
    group (labels merged with exact duplicates) of each file."""
    labels: list[str | None] = [None] * len(good)
    links: dict = {}
    try:
        labels, links = group_labels(options, good)
    except (CtframeError, ValueError) as error:  # e.g. a group_by that does not fit: report the rest
        findings.warnings.append(f"grouping skipped, every image counts as its own group: {error}")
    _, groups = final_groups(options, good, labels)
    findings.add(*groups_section(options, good, groups, links))
    findings.lap("grouping")
    return labels, groups


def _shortcuts(
    good: Sequence[Record],
    features: np.ndarray,
    groups: Sequence[str],
    classes: Sequence[str],
    findings: _Findings,
) -> None:
    """Metadata, pixel and subpopulation shortcuts, each timed as its own stage."""
    for audit in (
        lambda: metadata_shortcuts(good, groups),
        lambda: pixel_shortcuts(good, features, groups),
        lambda: subpopulation_shortcuts(good, features, groups, classes),
    ):
        section, warnings = audit()
        findings.add(section, warnings)
        findings.lap(section.title.split(":")[0].split(" (")[0].lower())


def _leakage(
    options: FolderSplitOptions, good: Sequence[Record], labels: Sequence[str | None], findings: _Findings
) -> None:
    try:
        section, warnings = leakage_section(options, good, labels)
    except (CtframeError, ValueError) as error:  # e.g. too few groups to split: report the rest
        findings.warnings.append(f"leakage check skipped: {error}")
    else:
        findings.add(section, warnings)
    findings.lap("leakage check of two simulated splits")


def _title(root: Path, good: Sequence[Record], classes: Sequence[str]) -> str:
    return f"Audit of {root} ({len(good)} images, {len(classes)} classes: {', '.join(classes)})"
