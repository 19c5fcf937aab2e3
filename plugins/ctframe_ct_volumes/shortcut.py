"""The acquisition-shortcut check: does one technical field (scanner, kernel, ...) predict the class?

Each series is one sample, its patient its group. For each field on its own, and for all fields
together, a small decision tree on the one-hot field values is scored under stratified grouped k-fold
cross-validation (a patient's series are never on both sides) by the balanced accuracy of its
out-of-fold predictions. Chance is ``1 / classes`` (what always guessing one class scores). A field
whose balanced accuracy reaches :data:`WARN_AT` (0.8) gets a warning: it alone tells the classes
apart, so a model can learn the hospital instead of the disease.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ctframe import AuditSection

WARN_AT = 0.8
"""Balanced accuracy at or above which a field alone is said to predict the class."""
MAX_FOLDS = 5
ALL_FIELDS = "all fields together"


@dataclass(frozen=True)
class Score:
    balanced_accuracy: float
    chance: float
    folds: int

    @property
    def shortcut(self) -> bool:
        return self.balanced_accuracy >= WARN_AT


def _folds(labels: np.ndarray, groups: np.ndarray) -> int:
    """Folds a stratified grouped split can make: each class needs a patient in every fold."""
    per_class = [len(np.unique(groups[labels == label])) for label in np.unique(labels)]
    return min(MAX_FOLDS, *per_class) if len(per_class) >= 2 else 0


def grouped_score(
    columns: Sequence[Sequence[str]], labels: Sequence[str], groups: Sequence[str]
) -> Score | None:
    """Out-of-fold balanced accuracy of a tree on one-hot ``columns`` (each a value per sample), or
    ``None`` when fewer than two folds fit (a class with a single patient)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    label_array, group_array = np.asarray(labels), np.asarray(groups)
    folds = _folds(label_array, group_array)
    if folds < 2:
        return None
    features = np.asarray(columns, dtype=object).T  # (samples, fields)
    model = make_pipeline(
        OneHotEncoder(handle_unknown="ignore"),
        DecisionTreeClassifier(max_depth=4, class_weight="balanced", random_state=0),
    )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
    predicted = cross_val_predict(model, features, label_array, groups=group_array, cv=splitter)
    score = float(balanced_accuracy_score(label_array, predicted))
    return Score(score, 1 / len(np.unique(label_array)), folds)


def shortcut_section(
    fields: Mapping[str, Sequence[str]], labels: Sequence[str], groups: Sequence[str]
) -> tuple[AuditSection, list[str]]:
    """One row per field (and all together); a warning naming the fields that predict the class."""
    title = f"Acquisition shortcut: each field predicting the class (grouped CV, warn at {WARN_AT:.0%})"
    columns = ["field", "distinct values", "balanced accuracy", "chance", "folds", "verdict"]
    rows: list[list[str]] = []
    flagged: list[str] = []
    candidates = {name: [values] for name, values in fields.items()}
    candidates[ALL_FIELDS] = list(fields.values())
    for name, matrix in candidates.items():
        score = grouped_score(matrix, labels, groups)
        if score is None:
            return AuditSection(title, columns, []), [
                "acquisition-shortcut check skipped: every class needs at least 2 patients"
            ]
        distinct = len({tuple(values) for values in zip(*matrix, strict=True)})
        verdict = "SHORTCUT" if score.shortcut else "-"
        rows.append(
            [
                name,
                str(distinct),
                f"{score.balanced_accuracy:.2f}",
                f"{score.chance:.2f}",
                str(score.folds),
                verdict,
            ]
        )
        if score.shortcut and name != ALL_FIELDS:
            flagged.append(f"{name} ({score.balanced_accuracy:.2f})")
    warnings = []
    if flagged:
        warnings.append(
            f"an acquisition field alone predicts the class (balanced accuracy >= {WARN_AT}, chance "
            f"{1 / len(set(labels)):.2f}): {', '.join(flagged)}; the classes likely come from different "
            "scanners or sites, so a model can learn those instead of the disease; test on an external set "
            "where each class comes from every site"
        )
    return AuditSection(title, columns, rows), warnings
