"""Findings: what went wrong in an evaluation, said in one sentence each with what to do about it.

Tidy tables can hide a broken model: a confusion matrix with one empty column, a fine-tuned model worse
than the one before it, a threshold chosen on a handful of validation images. Each rule here looks for
one such pattern in the test predictions and the evaluation already computed, and says so at the top of
the report, in ``metrics.json`` (``findings``) and on the console. The rules and their cut-offs:

* ``one_class``: a model gives one class to at least :data:`ONE_CLASS_SHARE` of the test images while
  that class is at most :data:`SKEWED_SHARE` of them. Its ROC AUC tells apart a threshold problem (the
  ranking is fine: choose the threshold on validation or recalibrate) from a model that learnt nothing.
* ``threshold_off`` (two classes, not already ``one_class``): the ranking is good (ROC AUC at least
  :data:`GOOD_AUC`) but the balanced accuracy at the model's threshold is at least :data:`THRESHOLD_GAP`
  below the best any threshold reaches on test. The best threshold is named to show the size of the
  problem, never to be used: a threshold read off the test set is optimistic.
* ``worse_than_before``: a later model (fine-tuned) is worse than the one before it on a metric where
  higher is better: its paired bootstrap interval lies below zero, or without intervals its point
  value is at least :data:`WORSE_BY` lower.
* ``small_validation``: a class has fewer than :data:`MIN_VALIDATION` validation images: the threshold,
  recalibration, conformal quantile and early stopping chosen on it are unreliable.
* ``data_differs``: an external evaluation's data differs from the training data in a way the numbers
  do not show (mapped class names, groups missing or of another unit: ``EvaluationData.differences``).

The ROC AUC here is the Mann-Whitney statistic with ties counted half (the same value as scikit-learn's
``roc_auc_score``), computed on the recalibrated probabilities the model decides with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

from ctframe.base.training import Predictions

ONE_CLASS_SHARE = 0.95
SKEWED_SHARE = 0.8
GOOD_AUC = 0.75
THRESHOLD_GAP = 0.15
WORSE_BY = 0.05
MIN_VALIDATION = 10
LOWER_IS_BETTER = ("ece", "brier", "log_loss", "loss")


@dataclass(frozen=True)
class Finding:
    code: str
    """Which rule: one_class, threshold_off, worse_than_before, small_validation (or a caller's own)."""
    message: str
    """One sentence: what is wrong, and what to do."""
    model: str | None = None
    """The model key it concerns; None for the data."""

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 positive, 0 negative); None with one class."""
    positives = int(np.sum(labels == 1))
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _balanced_accuracy(labels: np.ndarray, decided: np.ndarray) -> float:
    return float(np.mean([np.mean(decided[labels == c] == c) for c in (0, 1)]))


def _best_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest balanced accuracy on these rows, and that accuracy: the ROC
    point farthest above the diagonal, since balanced accuracy is (TPR + 1 - FPR) / 2 (n log n)."""
    fpr, tpr, cuts = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(cuts[best], 1.0)), float((tpr[best] + 1 - fpr[best]) / 2)


def _one_class(title: str, key: str, test: Predictions, predicted: np.ndarray, names: Sequence[str],
               auc: float | None, threshold: float | None) -> Finding | None:  # fmt: skip
    counts = np.bincount(predicted, minlength=len(names))
    top = int(np.argmax(counts))
    share = counts[top] / len(predicted)
    true_share = float(np.mean(np.asarray(test.labels) == top))
    if share < ONE_CLASS_SHARE or true_share > SKEWED_SHARE:
        return None
    said = (
        f"{title} predicts {names[top]} for {share:.0%} of the test images ({counts[top]} of "
        f"{len(predicted)}), which hold {true_share:.0%} {names[top]}"
    )
    if auc is not None and auc >= GOOD_AUC and threshold is not None:
        said += (
            f"; its ranking is good (ROC AUC {auc:.2f}), so the threshold {threshold:.3g} is off: choose it "
            'on validation ([evaluation] threshold = "youden") or recalibrate (calibrate = "platt")'
        )
    else:
        shown = "n/a" if auc is None else f"{auc:.2f}"
        said += (
            f"; it does not separate the classes either (ROC AUC {shown}): check the learning rate, the "
            "number of epochs and whether the backbone had pretrained weights"
        )
    return Finding("one_class", said, key)


def _threshold_off(title: str, key: str, labels: np.ndarray, scores: np.ndarray, threshold: float,
                   auc: float | None) -> Finding | None:  # fmt: skip
    if auc is None or auc < GOOD_AUC:
        return None
    now = _balanced_accuracy(labels, (scores >= threshold).astype(int))
    cut, best = _best_threshold(labels, scores)
    if best - now < THRESHOLD_GAP:
        return None
    return Finding(
        "threshold_off",
        f"{title} ranks well (ROC AUC {auc:.2f}) but its threshold {threshold:.3g} gives a balanced "
        f"accuracy of {now:.2f} where {best:.2f} was within reach (at {cut:.3g} on test, shown only for "
        'scale): choose the threshold on validation ([evaluation] threshold = "youden") or recalibrate',
        key,
    )


def model_findings(
    key: str,
    title: str,
    test: Predictions,
    val: Predictions | None,
    predicted: np.ndarray,
    threshold: float | None,
    names: Sequence[str],
    positive_index: int,
) -> list[Finding]:
    """The findings about one model's (recalibrated) test predictions and its validation split."""
    found: list[Finding] = []
    labels = np.asarray(test.labels)
    binary = len(names) == 2
    scores = np.asarray(test.probabilities, dtype=np.float64)[:, positive_index]
    auc = roc_auc((labels == positive_index).astype(int), scores) if binary else None
    one = _one_class(title, key, test, np.asarray(predicted), names, auc, threshold if binary else None)
    if one is not None:
        found.append(one)
    elif binary and threshold is not None:
        off = _threshold_off(title, key, (labels == positive_index).astype(int), scores, threshold, auc)
        if off is not None:
            found.append(off)
    if val is not None and len(val.labels):
        counts = np.bincount(np.asarray(val.labels), minlength=len(names))
        if counts.min() < MIN_VALIDATION:
            least = int(np.argmin(counts))
            found.append(
                Finding(
                    "small_validation",
                    f"the validation split holds {len(val.labels)} images ({counts[least]} {names[least]}): "
                    "the threshold, recalibration and early stopping chosen on it are unreliable; raise "
                    "val_fraction or use ctframe cv",
                    key,
                )
            )
    return found


def worse_than_before(differences: Sequence, titles: dict[str, str]) -> list[Finding]:
    """A later model worse than the one before it (``differences``: paired differences to it)."""
    found = []
    for difference in differences:
        worse, bounded = [], False
        for name, estimate in difference.estimates.items():
            if any(name.endswith(word) for word in LOWER_IS_BETTER) or not np.isfinite(estimate.value):
                continue
            bounded = estimate.high is not None and bool(np.isfinite(estimate.high))
            if (bounded and estimate.high < 0) or (not bounded and estimate.value <= -WORSE_BY):
                worse.append(f"{difference.titles.get(name, name)} {estimate.value:+.3f}")
        if worse:
            model, reference = titles[difference.model], titles[difference.reference]
            basis = "paired bootstrap interval below zero" if bounded else f"no intervals; {WORSE_BY} or more"
            found.append(
                Finding(
                    "worse_than_before",
                    f"{model} is worse than {reference} ({', '.join(worse)}; {basis}): "
                    f"use {reference}, or fine-tune with a lower learning rate, fewer unfrozen layers or "
                    "BatchNorm kept in inference mode",
                    difference.model,
                )
            )
    return found


def unique(findings: Sequence[Finding]) -> list[Finding]:
    """Each message once: the data's findings (small validation) repeat for every model."""
    seen, kept = set(), []
    for finding in findings:
        about_data = finding.code == "small_validation"
        text = finding.code if about_data else finding.message
        if text not in seen:
            seen.add(text)
            kept.append(Finding(finding.code, finding.message) if about_data else finding)
    return kept
