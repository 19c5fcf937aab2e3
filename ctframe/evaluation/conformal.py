"""Split-conformal prediction sets, fitted on validation and applied unchanged to test and later data.

Nonconformity of a sample for class k is 1 - p_k (on the recalibrated probabilities). The quantile of
the validation scores of the true class, at rank ceil((n + 1)(1 - alpha)) of n (the finite-sample
correction), bounds the score of a new exchangeable sample with probability >= 1 - alpha. Class-
conditional: one quantile per class from that class's validation samples, so coverage holds per class;
marginal: one quantile from all of them. When the rank exceeds n (too few samples for alpha) the
quantile is 1: that class is in every set. A set of one class is a decision; more than one class is an
abstention ("uncertain"); an empty set (no class plausible) is reported separately and is no decision
either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta

SET_SEPARATOR = "|"
TOLERANCE = 1e-12
"""A score equal to the quantile is inside the set; float rounding must not move it out."""


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest of ``scores``; 1 (everything) when that exceeds n."""
    n = len(scores)
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if n == 0 or rank > n:
        return 1.0
    return float(np.sort(np.asarray(scores, dtype=np.float64))[rank - 1])


@dataclass(frozen=True)
class ConformalRule:
    alpha: float
    method: str
    """'class_conditional' or 'marginal'."""
    class_names: tuple[str, ...]
    quantiles: tuple[float, ...]
    """Per class, in class order (all equal for 'marginal')."""
    calibration_counts: tuple[int, ...] = ()
    """Validation samples per class the quantiles came from."""

    def sets(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, K) booleans: class k is in sample n's set when 1 - p_k <= q_k."""
        scores = 1.0 - np.asarray(probabilities, dtype=np.float64)
        return scores <= np.asarray(self.quantiles)[None, :] + TOLERANCE

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """Each sample's set as text: "COVID", "COVID|non-COVID", "" (empty)."""
        return set_labels(self.sets(probabilities), self.class_names)

    def record(self) -> dict[str, Any]:
        """The model file's ``conformal`` entry."""
        return {
            "alpha": self.alpha,
            "method": self.method,
            "quantiles": dict(zip(self.class_names, self.quantiles, strict=True)),
            "nonconformity": "1 - p(class)",
            "fitted_on": "val",
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], class_names: Sequence[str]) -> ConformalRule:
        quantiles = record["quantiles"]
        return cls(
            float(record["alpha"]),
            str(record["method"]),
            tuple(class_names),
            tuple(float(quantiles[name]) for name in class_names),
        )


def set_labels(sets: np.ndarray, class_names: Sequence[str]) -> list[str]:
    return [
        SET_SEPARATOR.join(name for name, inside in zip(class_names, row, strict=True) if inside)
        for row in sets
    ]


def fit_conformal(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], alpha: float, method: str
) -> ConformalRule:
    """Quantiles of the validation nonconformity scores 1 - p(true class)."""
    labels = np.asarray(labels)
    scores = 1.0 - np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    counts = tuple(int((labels == k).sum()) for k in range(len(class_names)))
    if method == "marginal":
        quantiles = (conformal_quantile(scores, alpha),) * len(class_names)
    else:
        quantiles = tuple(conformal_quantile(scores[labels == k], alpha) for k in range(len(class_names)))
    return ConformalRule(alpha, method, tuple(class_names), quantiles, counts)


def binomial_interval(successes: int, trials: int, confidence: float) -> tuple[float | None, float | None]:
    """Clopper-Pearson (exact) interval of a proportion; ``None`` without trials."""
    if trials == 0:
        return None, None
    tail = (1.0 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def _proportion(successes: int, trials: int, confidence: float) -> dict[str, Any]:
    low, high = binomial_interval(successes, trials, confidence)
    value = successes / trials if trials else None
    return {"value": value, "ci_low": low, "ci_high": high, "n": trials, "count": successes}


def summarise(
    rule: ConformalRule, labels: np.ndarray, probabilities: np.ndarray, confidence: float
) -> dict[str, Any]:
    """Coverage per class (Clopper-Pearson CIs), set sizes, abstention, and accuracy on decided cases."""
    labels = np.asarray(labels)
    sets = rule.sets(probabilities)
    sizes = sets.sum(axis=1)
    covered = sets[np.arange(len(labels)), labels]
    decided = sizes == 1
    n = len(labels)
    per_class = {}
    for k, name in enumerate(rule.class_names):
        mine = labels == k
        per_class[name] = {
            "coverage": _proportion(int(covered[mine].sum()), int(mine.sum()), confidence),
            "recall_decided": _proportion(
                int((covered & decided & mine).sum()), int((decided & mine).sum()), confidence
            ),
        }
    return {
        **rule.record(),
        "target_coverage": 1.0 - rule.alpha,
        "validation_counts": dict(zip(rule.class_names, rule.calibration_counts, strict=False)),
        "test_samples": n,
        "coverage": _proportion(int(covered.sum()), n, confidence),
        "per_class": per_class,
        "abstention_rate": _proportion(int((sizes > 1).sum()), n, confidence),
        "empty_rate": _proportion(int((sizes == 0).sum()), n, confidence),
        "decided_rate": _proportion(int(decided.sum()), n, confidence),
        "accuracy_decided": _proportion(int((covered & decided).sum()), int(decided.sum()), confidence),
        "mean_set_size": float(sizes.mean()) if n else None,
        "interval": f"{confidence:.0%} exact binomial (Clopper-Pearson) intervals, samples independent",
    }
