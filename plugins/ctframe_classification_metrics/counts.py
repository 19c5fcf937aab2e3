"""Confusion counts for many sample weightings at once, and the per-class rates built from them.

``weights`` has shape (B, N): one row of sample weights per bootstrap resample (how often each
sample was drawn). With a single row of ones the result is the plain confusion matrix.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(
    labels: np.ndarray, predicted: np.ndarray, classes: int, weights: np.ndarray
) -> np.ndarray:
    """Weighted confusion matrices (B, C, C): rows are true classes, columns predicted classes."""
    cell = np.zeros((len(labels), classes * classes))
    cell[np.arange(len(labels)), labels * classes + predicted] = 1.0
    return (weights @ cell).reshape(len(weights), classes, classes)


def per_class_counts(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest tp, fp, fn, tn per class, each (B, C)."""
    true_positive = np.diagonal(confusion, axis1=1, axis2=2)
    false_positive = confusion.sum(axis=1) - true_positive
    false_negative = confusion.sum(axis=2) - true_positive
    total = confusion.sum(axis=(1, 2))[:, None]
    true_negative = total - true_positive - false_positive - false_negative
    return {"tp": true_positive, "fp": false_positive, "fn": false_negative, "tn": true_negative}


def ratio(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), zero_division)


def average_over_classes(
    values: np.ndarray, support: np.ndarray, average: str, positive_index: int
) -> np.ndarray:
    """(B, C) per-class values -> (B,): the positive class, the mean, or the support-weighted mean.

    Classes whose value is NaN (zero_division='nan') are left out of the mean, as scikit-learn does.
    """
    if average == "binary":
        return values[:, positive_index]
    defined = np.isfinite(values)
    weights = defined.astype(np.float64) if average == "macro" else np.where(defined, support, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(defined, values, 0.0) * weights).sum(axis=1) / weights.sum(axis=1)
