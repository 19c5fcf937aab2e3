"""Choosing the decision threshold on validation predictions (never on test)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from ctframe.base.errors import DataError
from ctframe.base.training import Predictions
from ctframe.evaluation.conformal import binomial_interval
from ctframe.registry.settings import EvaluationSettings


@dataclass(frozen=True)
class ThresholdChoice:
    method: str
    """'fixed', 'youden', 'sensitivity', or 'argmax' for more than two classes."""
    value: float | None
    """Threshold on the positive class's probability; ``None`` for 'argmax'."""
    chosen_on: str | None = None
    """'val' when chosen from validation predictions."""
    note: str | None = None
    """Why the requested method could not be used, if it could not."""

    def describe(self) -> str:
        if self.value is None:
            return "most probable class"
        where = " on validation" if self.chosen_on else ""
        names = {
            "fixed": "fixed",
            "youden": f"Youden's J{where}",
            "sensitivity": f"target sensitivity{where}",
        }
        return f"{self.value:.3f} ({names.get(self.method, self.method)})"

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "value": self.value, "chosen_on": self.chosen_on, "note": self.note}


def choose_threshold(
    val: Predictions | None, positive_index: int, classes: int, settings: EvaluationSettings
) -> ThresholdChoice:
    """The threshold the settings ask for, computed from validation predictions when needed.

    Falls back to the fixed threshold, with a note, when validation cannot decide (no validation
    samples, or only one class among them).
    """
    fixed = ThresholdChoice("fixed", settings.fixed_threshold)
    if classes > 2:
        return ThresholdChoice("argmax", None)
    if settings.threshold == "fixed":
        return fixed
    if val is None or len(val.labels) == 0:
        return ThresholdChoice(
            "fixed",
            settings.fixed_threshold,
            note=f"no validation predictions to choose a {settings.threshold} "
            f"threshold; used the fixed threshold {settings.fixed_threshold}",
        )
    truth = np.asarray(val.labels) == positive_index
    if truth.all() or not truth.any():
        return ThresholdChoice(
            "fixed",
            settings.fixed_threshold,
            note=f"validation holds one class only, so no {settings.threshold} "
            f"threshold can be chosen; used the fixed threshold {settings.fixed_threshold}",
        )
    scores = np.asarray(val.probabilities, dtype=np.float64)[:, positive_index]
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise DataError(
            f"validation split: {bad} of {len(scores)} samples have NaN or infinite scores, so no "
            f"{settings.threshold} threshold can be chosen; the model diverged: lower the learning rate"
        )

    false_positive_rate, true_positive_rate, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    if settings.threshold == "youden":
        best = int(np.argmax(true_positive_rate - false_positive_rate))  # first = highest threshold on ties
    else:
        best = int(np.flatnonzero(true_positive_rate >= settings.target_sensitivity - 1e-12)[0])
    value = float(min(thresholds[best], 1.0))  # scikit-learn's first threshold is +inf
    return ThresholdChoice(settings.threshold, value, chosen_on="val")


def validation_rates(
    val: Predictions | None, positive_index: int, threshold: float | None, confidence: float
) -> dict[str, object] | None:
    """Sensitivity and specificity the threshold reached on the (recalibrated) validation predictions,
    with exact binomial intervals: the operating point a model file and its exports carry. ``None``
    with more than two classes, no threshold or no validation samples."""
    if val is None or threshold is None or len(val.labels) == 0 or val.probabilities.shape[1] != 2:
        return None
    said = np.asarray(val.probabilities)[:, positive_index] >= threshold
    truly = np.asarray(val.labels) == positive_index
    rates: dict[str, object] = {"threshold": threshold, "split": "val", "confidence": confidence}
    for name, members, hits in (("sensitivity", truly, said), ("specificity", ~truly, ~said)):
        trials, successes = int(members.sum()), int((members & hits).sum())
        low, high = binomial_interval(successes, trials, confidence)
        value = successes / trials if trials else None
        rates[name] = {"value": value, "ci_low": low, "ci_high": high, "n": trials, "count": successes}
    return rates
