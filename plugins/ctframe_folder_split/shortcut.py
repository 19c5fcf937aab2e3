"""Does image metadata alone (colour mode, format, size) predict the class?

If it does, a model can score by learning how the images were stored instead of what they show.
The test: 5-fold cross-validated accuracy of a shallow decision tree on the metadata, compared with
always guessing the majority class; it warns when the tree is better by at least 5 points and a
one-sided binomial test puts the gain beyond chance (p < 0.01).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ctframe import AuditSection
from ctframe_folder_split.scan import Record

MIN_GAIN = 0.05
MAX_P_VALUE = 0.01
FEATURE_SETS = {
    "colour mode": ("mode",),
    "format": ("format",),
    "size (width, height)": ("size",),
    "mode + format + size": ("mode", "format", "size"),
}


def _features(records: Sequence[Record], parts: Sequence[str]) -> np.ndarray:
    columns: list[np.ndarray] = []
    for part in parts:
        if part == "size":
            columns.append(np.array([[r.info.width, r.info.height] for r in records], dtype=np.float64))
            continue
        values = [getattr(r.info, part) for r in records]
        levels = sorted(set(values))
        columns.append(np.array([[value == level for level in levels] for value in values], dtype=np.float64))
    return np.hstack(columns)


def cross_validated_accuracy(features: np.ndarray, labels: np.ndarray, folds: int) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=3, random_state=0)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    predicted = cross_val_predict(tree, features, labels, cv=splitter)
    return float((predicted == labels).mean())


def metadata_shortcuts(records: Sequence[Record]) -> tuple[AuditSection, list[str]]:
    from scipy.stats import binomtest

    columns = ["metadata", "cross-validated accuracy", "majority-class rate", "p-value", "verdict"]
    records = [r for r in records if r.info is not None]
    labels = np.array([r.entry.class_name for r in records])
    class_counts = Counter(labels.tolist())
    folds = min(5, min(class_counts.values(), default=0))
    if len(class_counts) < 2 or folds < 2:
        return AuditSection("Metadata shortcut", columns, []), []
    majority = max(class_counts.values()) / len(labels)
    rows = []
    leaky: list[str] = []
    for name, parts in FEATURE_SETS.items():
        accuracy = cross_validated_accuracy(_features(records, parts), labels, folds)
        correct = round(accuracy * len(labels))
        p_value = binomtest(correct, len(labels), majority, alternative="greater").pvalue
        shortcut = accuracy - majority >= MIN_GAIN and p_value < MAX_P_VALUE
        rows.append(
            [name, f"{accuracy:.1%}", f"{majority:.1%}", f"{p_value:.2g}", "SHORTCUT" if shortcut else "-"]
        )
        if shortcut:
            leaky.append(f"{name} ({accuracy:.0%})")
    warnings = []
    if leaky:
        warnings.append(
            f"image metadata alone predicts the class better than chance: {', '.join(leaky)} vs "
            f"{majority:.0%} for the majority class; a model could learn how the images were stored "
            "instead of what they show (folder_split converts every image to RGB at one size, but check "
            "how each class was collected)"
        )
    return AuditSection("Metadata shortcut (5-fold decision tree)", columns, rows), warnings
