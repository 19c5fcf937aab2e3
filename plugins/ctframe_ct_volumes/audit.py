"""``ctframe audit ROOT`` on a tree of CT series (DICOM) and NIfTI volumes.

Sections: series, slices and patients per class with the skipped files by reason; per class, how the
allow-listed acquisition fields (pseudonym.allowed_fields: manufacturer, model, kernel, slice thickness,
pixel spacing, kVp, contrast present) are distributed; and the shortcut check (shortcut.py). The
report holds no patient, study or series id and no file path below ROOT, so it needs no pseudonym key:
ids are keyed with the user's key when one is set (a labels CSV may use pseudonyms) and with a
throw-away key otherwise, and serve only to group a patient's series.

ROOT is a CT tree (this plugin answers) when, among the first PROBE_FILES files of a sorted walk, one is
DICOM or NIfTI and they outnumber the PNG / JPEG images; otherwise the hook returns None and an image
folder goes to folder_split.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctframe import AuditReport, AuditSection, DataError, RecipeError
from ctframe_ct_volumes.discover import Discovery, discover
from ctframe_ct_volumes.labels import KEY_COLUMNS, LABEL_COLUMN, label_volumes
from ctframe_ct_volumes.pseudonym import Pseudonymizer, load_key
from ctframe_ct_volumes.series import TECHNICAL_FIELDS, Series
from ctframe_ct_volumes.shortcut import shortcut_section
from ctframe_ct_volumes.volumes import volumes_of

AUDIT_OPTIONS = ("labels", "label_key", "classes", "pseudonym_key_file")
LABELS_FILE = "labels.csv"  # used when present at ROOT and no labels option is given
PROBE_FILES = 200
NOT_RECORDED = "(not recorded)"
UNLABELLED = "series without a label"
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")

# The audited fields: display name -> Series.technical name; each DICOM keyword is allow-listed.
FIELDS = {
    "manufacturer": "manufacturer",
    "model": "model",
    "convolution kernel": "kernel",
    "slice thickness (mm)": "slice_thickness",
    "pixel spacing (mm)": "pixel_spacing",
    "kVp": "kvp",
    "contrast": "contrast_agent",
}


def audited_keywords() -> list[str]:
    """The DICOM keywords behind FIELDS (a test checks they are all allow-listed)."""
    return [keyword for keyword, name in TECHNICAL_FIELDS.items() if name in FIELDS.values()]


def looks_like_ct(root: Path) -> bool:
    """Whether ROOT holds DICOM / NIfTI files rather than images (see the module docstring)."""
    if not root.is_dir():
        return False
    medical = images = seen = 0
    for folder, folders, names in os.walk(root):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            if seen >= PROBE_FILES:
                return medical > 0 and medical > images
            seen += 1
            if name.lower().endswith((".nii", ".nii.gz")):
                medical += 1
                continue
            try:
                with open(Path(folder) / name, "rb") as handle:
                    head = handle.read(132)
            except OSError:
                continue
            medical += head[128:132] == b"DICM"
            images += head.startswith(_IMAGE_MAGIC)
    return medical > 0 and medical > images


def _check_options(given: dict[str, Any]) -> None:
    unknown = sorted(set(given) - set(AUDIT_OPTIONS))
    if unknown:
        raise RecipeError(f"unknown audit option(s) {', '.join(unknown)}; known: {', '.join(AUDIT_OPTIONS)}")
    if given.get("label_key", "patient") not in KEY_COLUMNS:
        raise RecipeError(f"audit option label_key: one of {', '.join(KEY_COLUMNS)}")


def _labels_file(root: Path, given: dict[str, Any]) -> Path | None:
    """The labels option (relative to the working folder, else to ROOT), else ROOT/labels.csv if any."""
    if not given.get("labels"):
        return root / LABELS_FILE if (root / LABELS_FILE).is_file() else None
    path = Path(given["labels"])
    for candidate in (path, root / path):
        if candidate.is_file():
            return candidate
    raise DataError(f"labels file {path} not found (relative to the working folder or {root})")


def _classes(given: dict[str, Any], labels: Path | None, folders: Sequence[str]) -> list[str]:
    """The classes option, else the labels CSV's labels in order of appearance, else the top folders."""
    if given.get("classes"):
        classes = [name.strip() for name in str(given["classes"]).split(",") if name.strip()]
    elif labels is not None:
        try:
            with open(labels, newline="", encoding="utf-8-sig") as handle:
                found = [(row.get(LABEL_COLUMN) or "").strip() for row in csv.DictReader(handle)]
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"cannot read the labels file {labels}: {error}") from None
        classes = list(dict.fromkeys(label for label in found if label))
    else:
        classes = sorted(set(folders))
    if len(set(classes)) < 2:
        raise RecipeError(
            f"the audit needs at least two classes, found {classes}; "
            "give --set labels=FILE or --set classes=a,b"
        )
    return list(dict.fromkeys(classes))


def _value(series: Series | None, name: str) -> str:
    """A field's value for the tables, in a form that compares equal across spellings of a number."""
    raw = None if series is None else series.technical.get(name)
    if name == "contrast_agent":
        return "present" if raw else "absent"
    if not raw:
        return NOT_RECORDED
    if name in ("slice_thickness", "kvp", "pixel_spacing"):
        try:
            return " x ".join(f"{float(part):g}" for part in raw.split("\\"))
        except ValueError:
            return raw
    return raw


def audit_ct_volumes(root: Path, given: dict[str, Any]) -> AuditReport | None:
    """The audit report for ROOT, or None when ROOT is not a CT tree."""
    if not looks_like_ct(root):
        return None
    _check_options(given)
    key = load_key(given.get("pseudonym_key_file") or None)
    pseudonym = Pseudonymizer(key or secrets.token_bytes(32))  # ids only group series; never shown
    discovery = discover(root)
    volumes = volumes_of(discovery, pseudonym)
    labels_file = _labels_file(root, given)
    folders = [volume.keys["path"][0].split("/")[0] for volume in volumes if "/" in volume.keys["path"][0]]
    classes = _classes(given, labels_file, folders)
    found = label_volumes(volumes, labels_file, given.get("label_key", "patient"), classes)
    sources: list[Series | None] = [*discovery.series, *[None] * len(discovery.nifti)]
    kept = [i for i, label in enumerate(found) if label is not None]
    labels = [str(found[i]) for i in kept]
    groups = [volumes[i].patient for i in kept]
    slices = [_slice_count(sources[i], discovery, i) for i in kept]
    values = {title: [_value(sources[i], name) for i in kept] for title, name in FIELDS.items()}
    skipped = Counter(discovery.skipped)
    if len(found) > len(kept):
        skipped[UNLABELLED] = len(found) - len(kept)
    sections = [
        _counts(classes, labels, groups, slices),
        _skipped(skipped),
        _distribution(classes, labels, values),
    ]
    warnings = [f"class {name} has no labelled series" for name in classes if name not in labels]
    if not warnings:
        section, shortcut_warnings = shortcut_section(values, labels, groups)
        sections.append(section)
        warnings += shortcut_warnings
    title = f"CT audit of {root} ({len(kept)} labelled series, {len(classes)} classes: {', '.join(classes)})"
    return AuditReport(title, sections, warnings)


def _slice_count(series: Series | None, discovery: Discovery, index: int) -> int:
    if series is not None:
        return series.slice_count
    from ctframe_ct_volumes.nifti import read_nifti

    try:
        return int(read_nifti(discovery.nifti[index - len(discovery.series)]).hu.shape[0])
    except DataError:
        return 0


def _counts(
    classes: Sequence[str], labels: Sequence[str], groups: Sequence[str], slices: Sequence[int]
) -> AuditSection:
    rows = []
    for name in classes:
        inside = [i for i, label in enumerate(labels) if label == name]
        rows.append([name, len(inside), sum(slices[i] for i in inside), len({groups[i] for i in inside})])
    rows.append(["all", len(labels), sum(slices), len(set(groups))])
    return AuditSection(
        "Series, slices and patients per class", ["class", "series", "slices", "patients"], rows
    )


def _skipped(skipped: Counter[str]) -> AuditSection:
    rows = [[reason, count] for reason, count in sorted(skipped.items())]
    return AuditSection("Skipped files and series by reason", ["reason", "count"], rows)


def _distribution(
    classes: Sequence[str], labels: Sequence[str], values: dict[str, list[str]]
) -> AuditSection:
    """One row per field value: series of each class with it (count and share of the class)."""
    totals = Counter(labels)
    rows = []
    for title, column in values.items():
        counts = Counter(zip(column, labels, strict=True))
        for value in sorted(set(column)):
            cells = [
                f"{counts[(value, name)]} ({counts[(value, name)] / max(totals[name], 1):.0%})"
                for name in classes
            ]
            rows.append([title, value, *cells])
    return AuditSection("Acquisition fields per class (series)", ["field", "value", *classes], rows)
