"""Choosing the decision threshold on validation predictions (never on test)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from ctframe.base.errors import DataError
from ctframe.base.training import Predictions
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
