"""Shortcut audits: does something other than the anatomy predict the class?

* **metadata**: how the files were stored (colour mode, format, width and height, file size);
* **pixels**: simple statistics of the canonical images the loader hands the model
  (:mod:`ctframe_folder_split.pixels`), which no format conversion removes;
* **sub-populations**: when a metadata value splits a class (some COVID files RGB, others RGBA), whether
  the pixel statistics tell the parts apart, i.e. whether the storage difference survives conversion.

Every question is answered the same way: out-of-fold accuracy of a small gradient-boosting model under
stratified *grouped* k-fold cross-validation (images of one group, a scan sequence or patient, never on
both sides), against always guessing the majority. A finding needs a gain of at least :data:`MIN_GAIN`
and p < :data:`MAX_P_VALUE` in a one-sided binomial test that counts groups, not images, as the
independent trials (images of one patient are not independent; with one image per group it is the
usual test on images).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctframe import AuditSection
from ctframe_folder_split.pixels import FAMILIES, columns
from ctframe_folder_split.scan import Record

MIN_GAIN = 0.05
MAX_P_VALUE = 0.01
MAX_FOLDS = 5
MIN_SUBPOPULATION = 10
"""Images a metadata value needs within a class (and at least 2 groups) before the audit asks whether
the pixels tell it from the rest of the class."""

FEATURE_SETS = {
    "colour mode": ("mode",),
    "format": ("format",),
    "size (width, height)": ("size",),
    "file size (bytes)": ("bytes",),
    "mode + format + size + bytes": ("mode", "format", "size", "bytes"),
}
SPLITTING_METADATA = {"colour mode": "mode", "format": "format"}
"""Categorical metadata whose values can split a class into sub-populations."""


@dataclass(frozen=True)
class Finding:
    """One cross-validated question: can ``features`` predict ``labels``?"""

    accuracy: float
    majority: float
    p_value: float
    folds: int
    groups: int

    @property
    def shortcut(self) -> bool:
        return self.accuracy - self.majority >= MIN_GAIN and self.p_value < MAX_P_VALUE

    def cells(self) -> list[str]:
        return [
            f"{self.accuracy:.1%}",
            f"{self.majority:.1%}",
            f"{self.p_value:.2g}",
            "SHORTCUT" if self.shortcut else "-",
        ]


def _model():
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Small and fixed: 50 rounds of 15-leaf trees fit 2,500 x 22 features in about 0.1 s. Leaves of 5
    # (not the default 20) so that a sub-population of a dozen images in a small folder can be found.
    return HistGradientBoostingClassifier(
        max_iter=50,
        max_leaf_nodes=15,
        min_samples_leaf=5,
        learning_rate=0.1,
        early_stopping=False,
        random_state=0,
    )


def possible_folds(labels: np.ndarray, groups: np.ndarray) -> int:
    """Folds a stratified grouped split can make: every label needs a group in each fold."""
    per_label = [len(np.unique(groups[labels == label])) for label in np.unique(labels)]
    return min(MAX_FOLDS, *per_label) if len(per_label) >= 2 else 0


def grouped_cross_validation(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> Finding | None:
    """Out-of-fold accuracy under stratified grouped k-fold, or ``None`` when fewer than 2 folds fit."""
    from scipy.stats import binomtest
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    folds = possible_folds(labels, groups)
    if folds < 2:
        return None
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
    # One OpenMP thread: on a busy 2-core machine two spinning threads made each small fit 3-8x slower.
    with threadpool_limits(1, user_api="openmp"):
        predicted = cross_val_predict(_model(), features, labels, groups=groups, cv=splitter)
    accuracy = float((predicted == labels).mean())
    majority = max(Counter(labels.tolist()).values()) / len(labels)
    trials = len(np.unique(groups))
    p_value = float(binomtest(round(accuracy * trials), trials, majority, alternative="greater").pvalue)
    return Finding(accuracy, majority, p_value, folds, trials)


def file_sizes(records: Sequence[Record]) -> np.ndarray:
    sizes = []
    for record in records:
        try:
            sizes.append(record.entry.path.stat().st_size)
        except OSError:  # vanished since the scan: unknown, and the tree can split NaN off
            sizes.append(np.nan)
    return np.asarray(sizes, dtype=np.float64)


def metadata_features(records: Sequence[Record], parts: Sequence[str], sizes: np.ndarray) -> np.ndarray:
    matrix: list[np.ndarray] = []
    for part in parts:
        if part == "size":
            matrix.append(np.array([[r.info.width, r.info.height] for r in records], dtype=np.float64))
        elif part == "bytes":
            matrix.append(sizes[:, None])
        else:
            values = [getattr(r.info, part) for r in records]
            levels = sorted(set(values))
            matrix.append(np.array([[v == level for level in levels] for v in values], dtype=np.float64))
    return np.hstack(matrix)


def metadata_shortcuts(
    records: Sequence[Record], groups: Sequence[str] | None = None
) -> tuple[AuditSection, list[str]]:
    """Does metadata predict the class? ``groups`` (one per record; default: every image its own)."""
    columns_ = ["metadata", "cross-validated accuracy", "majority-class rate", "p-value", "verdict"]
    keep = [i for i, r in enumerate(records) if r.info is not None]
    records = [records[i] for i in keep]
    group_array = np.asarray([str(i) for i in keep] if groups is None else [groups[i] for i in keep])
    labels = np.array([r.entry.class_name for r in records])
    title = "Metadata shortcut (grouped cross-validation)"
    sizes = file_sizes(records)
    rows = []
    leaky: list[str] = []
    majority = 0.0
    for name, parts in FEATURE_SETS.items():
        finding = grouped_cross_validation(metadata_features(records, parts, sizes), labels, group_array)
        if finding is None:
            return AuditSection(title, columns_, []), []
        majority = finding.majority
        rows.append([name, *finding.cells()])
        if finding.shortcut:
            leaky.append(f"{name} ({finding.accuracy:.0%})")
    warnings = []
    if leaky:
        warnings.append(
            f"image metadata alone predicts the class better than chance: {', '.join(leaky)} vs "
            f"{majority:.0%} for the majority class; a model could learn how the images were stored "
            "instead of what they show (folder_split converts every image to RGB at one size, which "
            "removes the flags themselves; the pixel audit below asks whether their traces remain)"
        )
    return AuditSection(title, columns_, rows), warnings


def pixel_shortcuts(
    records: Sequence[Record], features: np.ndarray, groups: Sequence[str]
) -> tuple[AuditSection, list[str]]:
    """Do statistics of the canonical images predict the class? One row per feature family."""
    columns_ = ["pixel statistics", "cross-validated accuracy", "majority-class rate", "p-value", "verdict"]
    labels = np.array([r.entry.class_name for r in records])
    group_array = np.asarray(groups)
    title = "Pixel shortcut: statistics of the canonical images (grouped cross-validation)"
    rows = []
    findings: dict[str, Finding] = {}
    for name, names in FAMILIES.items():
        finding = grouped_cross_validation(features[:, columns(names)], labels, group_array)
        if finding is None:
            return AuditSection(title, columns_, []), []
        findings[name] = finding
        rows.append([name, *finding.cells()])
    flagged = [f"{name} ({f.accuracy:.0%})" for name, f in findings.items() if f.shortcut]
    warnings = []
    if flagged:
        first = next(iter(findings.values()))
        warnings.append(
            f"simple statistics of the converted images predict the class under grouped "
            f"{first.folds}-fold cross-validation: {', '.join(flagged)} vs {first.majority:.0%} for the "
            "majority class. This is what the model sees after conversion, so no format conversion can "
            "remove it; it may be the disease (opacities raise lung intensity) or how each class was "
            "acquired or exported (scanner, windowing, borders), and the audit cannot tell which. Measure "
            "what the model's score is worth on an external test set from another source, or at least "
            "with grouped splits / grouped cross-validation, and do not read a high image-level score as "
            "diagnostic accuracy"
        )
    return AuditSection(title, columns_, rows), warnings


def subpopulation_shortcuts(
    records: Sequence[Record], features: np.ndarray, groups: Sequence[str], classes: Sequence[str]
) -> tuple[AuditSection, list[str]]:
    """Within each class split by a metadata value, do the pixel statistics tell the parts apart?"""
    columns_ = [
        "class",
        "split by",
        "sub-populations (images)",
        "share in each class",
        "cross-validated accuracy",
        "majority rate",
        "p-value",
        "verdict",
    ]
    title = "Pixel shortcut within a class: sub-populations that a metadata value splits"
    everything = columns(FAMILIES["all pixel statistics"])
    group_array = np.asarray(groups)
    class_array = np.array([r.entry.class_name for r in records])
    rows = []
    warnings = []
    for label, key in SPLITTING_METADATA.items():
        values = np.array([getattr(r.info, key) if r.info is not None else "" for r in records])
        for class_name in classes:
            inside = np.flatnonzero((class_array == class_name) & (values != ""))
            counts = Counter(values[inside].tolist())
            large = sorted(
                v
                for v, n in counts.items()
                if n >= MIN_SUBPOPULATION and len(np.unique(group_array[inside][values[inside] == v])) >= 2
            )
            if len(large) < 2:
                continue
            chosen = inside[np.isin(values[inside], large)]
            finding = grouped_cross_validation(
                features[chosen][:, everything], values[chosen], group_array[chosen]
            )
            if finding is None:
                continue
            shares = "; ".join(
                f"{v}: " + ", ".join(f"{c} {_share(values, class_array, v, c):.0%}" for c in classes)
                for v in large
            )
            parts = ", ".join(f"{v} ({counts[v]})" for v in large)
            rows.append([class_name, label, parts, shares, *finding.cells()])
            if finding.shortcut:
                warnings.append(
                    f"within {class_name}, the pixel statistics of the converted images tell {label} "
                    f"{' from '.join(large)} apart at {finding.accuracy:.0%} "
                    f"(majority {finding.majority:.0%}): the differently stored files also look different, "
                    f"which conversion cannot remove ({label} share per class: {shares}). Where a value is "
                    "more common in one class, a model can score by recognising that source; compare its "
                    "scores per sub-population and evaluate on external or grouped data"
                )
    return AuditSection(title, columns_, rows), warnings


def _share(values: np.ndarray, class_array: np.ndarray, value: str, class_name: str) -> float:
    in_class = class_array == class_name
    return float((values[in_class] == value).mean()) if in_class.any() else 0.0
