"""Ranking metrics (ROC AUC, PR AUC as average precision), point values and weighted batches.

The batched versions treat bootstrap counts as sample weights. Tied scores are grouped so that
ties count half in ROC AUC (the Mann-Whitney statistic scikit-learn's trapezoids give) and share
one precision/recall point in average precision (scikit-learn's step-wise definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctframe import MetricInput
from ctframe.api.metrics import checked_arrays

from .counts import average_over_classes
from .options import AveragedOptions, resolve_average


def _tie_groups(scores: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of the scores and the start of each run of equal scores in that order."""
    order = np.argsort(-scores if descending else scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts


def _weights_by_group(
    truth: np.ndarray, scores: np.ndarray, weights: np.ndarray, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per tie group, each (B, G), groups in score order."""
    order, starts = _tie_groups(scores, descending)
    ordered_weights = weights[:, order]
    positive = truth[order].astype(np.float64)
    return (
        np.add.reduceat(ordered_weights * positive, starts, axis=1),
        np.add.reduceat(ordered_weights * (1.0 - positive), starts, axis=1),
    )


def weighted_roc_auc(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P(score of a positive > score of a negative) + half P(tie), per weight row: (B,)."""
    positive, negative = _weights_by_group(truth, scores, weights, descending=False)
    negatives_below = np.cumsum(negative, axis=1) - negative
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive * (negatives_below + 0.5 * negative)).sum(axis=1) / pairs


def weighted_average_precision(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum over thresholds of (recall gain) x precision, per weight row: (B,)."""
    positive, negative = _weights_by_group(truth, scores, weights, descending=True)
    true_positives = np.cumsum(positive, axis=1)
    predicted = true_positives + np.cumsum(negative, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_positives / np.where(predicted > 0, predicted, 1), 0.0)
        return (positive * precision).sum(axis=1) / positive.sum(axis=1)


KINDS = {
    "roc_auc": ("ROC AUC Score", "roc_auc_score", weighted_roc_auc),
    "pr_auc": ("PR AUC", "average_precision_score", weighted_average_precision),
}


@dataclass(frozen=True)
class RankingMetric:
    """ROC AUC or PR AUC of the positive class's score, or one-vs-rest averaged over classes."""

    name: str
    options: AveragedOptions

    @property
    def titles(self) -> dict[str, str]:
        title = KINDS[self.name][0]
        return {self.name: title, **{f"{self.name}_{a}": f"{title} ({a})" for a in ("macro", "weighted")}}

    def _setup(self, inputs: MetricInput) -> tuple[np.ndarray, np.ndarray, str, list[int]]:
        labels, probabilities = checked_arrays(inputs)
        average = resolve_average(self.options.average, len(inputs.class_names))
        classes = [inputs.positive_index] if average == "binary" else list(range(len(inputs.class_names)))
        return labels, probabilities, average, classes

    def _value_name(self, average: str) -> str:
        return self.name if average == "binary" else f"{self.name}_{average}"

    def __call__(self, inputs: MetricInput) -> dict[str, object]:
        from sklearn import metrics

        labels, probabilities, average, classes = self._setup(inputs)
        score = getattr(metrics, KINDS[self.name][1])
        per_class = np.full((1, len(inputs.class_names)), np.nan)
        one_class = []
        for index in classes:
            truth = labels == index
            if truth.all() or not truth.any():
                one_class.append(inputs.class_names[index])
                continue
            per_class[0, index] = score(truth, probabilities[:, index])
        result: dict[str, object] = {}
        if one_class:
            value = float("nan")
            present = sorted({inputs.class_names[i] for i in labels})
            result["warnings"] = [
                f"{KINDS[self.name][0]} is undefined: it needs samples in and outside class {one_class}, "
                f"but the true labels hold only {present}"
            ]
        else:
            support = np.bincount(labels, minlength=len(inputs.class_names))[None, :].astype(float)
            value = float(average_over_classes(per_class, support, average, inputs.positive_index)[0])
        result[self._value_name(average)] = value
        return result

    def batched(self, inputs: MetricInput, weights: np.ndarray) -> dict[str, np.ndarray]:
        labels, probabilities, average, classes = self._setup(inputs)
        compute = KINDS[self.name][2]
        per_class = np.full((len(weights), len(inputs.class_names)), np.nan)
        support = np.zeros_like(per_class)
        for index in classes:
            truth = labels == index
            per_class[:, index] = compute(truth, probabilities[:, index], weights)
            support[:, index] = weights @ truth.astype(np.float64)
        averaged = average_over_classes(per_class, support, average, inputs.positive_index)
        undefined = ~np.isfinite(per_class[:, classes]).all(axis=1)  # undefined for one class: for all
        return {self._value_name(average): np.where(undefined, np.nan, averaged)}
