"""Metrics of the predicted labels: accuracy, precision, recall, specificity, F1, confusion matrix.

Point values come from scikit-learn; ``batched`` computes the same numbers for many bootstrap
weightings at once from weighted confusion matrices (tests check that both agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ctframe import MetricInput
from ctframe.api.metrics import checked_arrays, predicted_labels

from .counts import average_over_classes, confusion_counts, per_class_counts, ratio
from .options import ZERO_DIVISION, CountOptions, resolve_average

Rate = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]
"""Per-class counts -> (numerator, denominator), each (B, C)."""

RATES: dict[str, Rate] = {
    "precision": lambda c: (c["tp"], c["tp"] + c["fp"]),
    "recall": lambda c: (c["tp"], c["tp"] + c["fn"]),
    "specificity": lambda c: (c["tn"], c["tn"] + c["fp"]),
    "f1": lambda c: (2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
}

WHY_UNDEFINED = {
    "precision": "no sample was predicted as that class",
    "recall": "no sample belongs to that class",
    "specificity": "every sample belongs to that class",
    "f1": "that class is neither in the labels nor predicted",
}

TITLES = {"precision": "Precision", "recall": "Recall", "specificity": "Specificity", "f1": "F1 Score"}


def _decide(inputs: MetricInput) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = checked_arrays(inputs)
    return labels, predicted_labels(probabilities, inputs.positive_index, inputs.threshold)


def _sklearn_rate(
    name: str,
    labels: np.ndarray,
    predicted: np.ndarray,
    average: str,
    zero_division: float,
    inputs: MetricInput,
) -> float:
    from sklearn import metrics

    classes = len(inputs.class_names)
    if average == "binary":
        truth, decided = labels == inputs.positive_index, predicted == inputs.positive_index
        if name == "specificity":  # specificity is the recall of the negative side
            return float(metrics.recall_score(truth, decided, pos_label=False, zero_division=zero_division))
        score = {
            "precision": metrics.precision_score,
            "recall": metrics.recall_score,
            "f1": metrics.f1_score,
        }[name]
        return float(score(truth, decided, pos_label=True, zero_division=zero_division))
    if name == "specificity":  # scikit-learn has no specificity score; its one-vs-rest counts give it
        matrices = metrics.multilabel_confusion_matrix(labels, predicted, labels=np.arange(classes))
        tn, fp = matrices[:, 0, 0][None, :].astype(float), matrices[:, 0, 1][None, :].astype(float)
        support = np.bincount(labels, minlength=classes)[None, :].astype(float)
        return float(average_over_classes(ratio(tn, tn + fp, zero_division), support, average, 0)[0])
    score = {"precision": metrics.precision_score, "recall": metrics.recall_score, "f1": metrics.f1_score}[
        name
    ]
    return float(
        score(labels, predicted, labels=np.arange(classes), average=average, zero_division=zero_division)
    )


@dataclass(frozen=True)
class RateMetric:
    """Precision, recall, specificity or F1 for the positive class or averaged over classes."""

    name: str
    options: CountOptions

    @property
    def titles(self) -> dict[str, str]:
        title = TITLES[self.name]
        return {self.name: title, **{f"{self.name}_{a}": f"{title} ({a})" for a in ("macro", "weighted")}}

    def _value_name(self, average: str) -> str:
        return self.name if average == "binary" else f"{self.name}_{average}"

    def __call__(self, inputs: MetricInput) -> dict[str, object]:
        labels, predicted = _decide(inputs)
        classes = len(inputs.class_names)
        average = resolve_average(self.options.average, classes)
        zero_division = ZERO_DIVISION[self.options.zero_division]
        value = _sklearn_rate(self.name, labels, predicted, average, zero_division, inputs)
        result: dict[str, object] = {self._value_name(average): value}
        _, denominator = RATES[self.name](
            per_class_counts(confusion_counts(labels, predicted, classes, np.ones((1, len(labels)))))
        )
        undefined = np.flatnonzero(denominator[0] == 0)
        if average == "binary":
            undefined = undefined[undefined == inputs.positive_index]
        if undefined.size:
            names = [inputs.class_names[i] for i in undefined]
            value = ZERO_DIVISION[self.options.zero_division]
            result["warnings"] = [
                f"{TITLES[self.name]} is undefined for {names}: {WHY_UNDEFINED[self.name]}; "
                f"reported as {value} (zero_division = {self.options.zero_division!r})"
            ]
        return result

    def batched(self, inputs: MetricInput, weights: np.ndarray) -> dict[str, np.ndarray]:
        labels, predicted = _decide(inputs)
        classes = len(inputs.class_names)
        average = resolve_average(self.options.average, classes)
        counts = per_class_counts(confusion_counts(labels, predicted, classes, weights))
        numerator, denominator = RATES[self.name](counts)
        values = ratio(numerator, denominator, ZERO_DIVISION[self.options.zero_division])
        support = counts["tp"] + counts["fn"]
        return {
            self._value_name(average): average_over_classes(values, support, average, inputs.positive_index)
        }


@dataclass(frozen=True)
class Accuracy:
    """Share of correctly classified samples."""

    titles = {"accuracy": "Accuracy"}

    def __call__(self, inputs: MetricInput) -> dict[str, object]:
        from sklearn.metrics import accuracy_score

        labels, predicted = _decide(inputs)
        return {"accuracy": float(accuracy_score(labels, predicted))}

    def batched(self, inputs: MetricInput, weights: np.ndarray) -> dict[str, np.ndarray]:
        labels, predicted = _decide(inputs)
        return {"accuracy": weights @ (labels == predicted).astype(np.float64) / weights.sum(axis=1)}


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (true class, predicted class); stored with the metrics, not bootstrapped."""

    titles = {"confusion_matrix": "Confusion Matrix"}

    def __call__(self, inputs: MetricInput) -> dict[str, object]:
        from sklearn.metrics import confusion_matrix

        labels, predicted = _decide(inputs)
        matrix = confusion_matrix(labels, predicted, labels=np.arange(len(inputs.class_names)))
        return {
            "confusion_matrix": {
                "labels": list(inputs.class_names),
                "rows": "true class",
                "columns": "predicted class",
                "matrix": matrix.tolist(),
            }
        }

    def batched(self, inputs: MetricInput, weights: np.ndarray) -> dict[str, np.ndarray]:
        return {}  # nothing scalar to resample
