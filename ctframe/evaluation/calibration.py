"""Calibration: expected calibration error (ECE), Brier score and reliability-diagram bins.

Two classes: calibration of the positive class's probability (the reliability diagram's x axis).
More classes: ECE is top-label (confidence of the predicted class against being right) and Brier
sums the squared error over all classes, as scikit-learn's multi-class Brier score does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import brier_score_loss


@dataclass(frozen=True)
class ReliabilityBins:
    """Per equal-width bin: samples, mean predicted probability, observed frequency (NaN when empty)."""

    edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray


def calibration_target(
    labels: np.ndarray, probabilities: np.ndarray, positive_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted probability, outcome 0/1)`` per sample for the ECE and the reliability diagram."""
    if probabilities.shape[1] == 2:
        return probabilities[:, positive_index], (labels == positive_index).astype(np.float64)
    predicted = np.argmax(probabilities, axis=1)
    return probabilities.max(axis=1), (predicted == labels).astype(np.float64)


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1]; a probability of exactly 1 falls in the last bin."""
    return np.clip((np.asarray(confidence) * bins).astype(np.int64), 0, bins - 1)


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, bins: int) -> ReliabilityBins:
    index = bin_index(confidence, bins)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=confidence, minlength=bins) / counts
        observed = np.bincount(index, weights=outcome, minlength=bins) / counts
    return ReliabilityBins(np.linspace(0.0, 1.0, bins + 1), counts, mean_predicted, observed)


def expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray, bins: int) -> float:
    """sum over bins of (bin share) * |observed frequency - mean probability|."""
    return float(
        weighted_expected_calibration_error(confidence, outcome, bins, np.ones((1, len(outcome))))[0]
    )


@dataclass(frozen=True)
class BinnedGaps:
    """Per-sample gaps (outcome - confidence) in bin order, with where each non-empty bin starts:
    computed once, then the ECE of many weight rows needs no (N, bins) matrix and no sort."""

    order: np.ndarray
    starts: np.ndarray
    gaps: np.ndarray


def binned_gaps(confidence: np.ndarray, outcome: np.ndarray, bins: int) -> BinnedGaps:
    index = bin_index(confidence, bins)
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return BinnedGaps(order, starts, (np.asarray(outcome) - np.asarray(confidence))[order])


def binned_expected_calibration_error(binned: BinnedGaps, weights: np.ndarray) -> np.ndarray:
    """ECE per row of ``weights`` (B, N). Row by row sums, no matrix product: a row's value does not
    depend on how many rows come with it, so bootstrap intervals do not depend on the block size."""
    weighted = weights[:, binned.order]
    weighted *= binned.gaps
    gap_per_bin = np.add.reduceat(weighted, binned.starts, axis=1)
    return np.abs(gap_per_bin).sum(axis=1) / weights.sum(axis=1)


def weighted_expected_calibration_error(
    confidence: np.ndarray, outcome: np.ndarray, bins: int, weights: np.ndarray
) -> np.ndarray:
    """ECE for each row of sample ``weights`` (B, N) (bootstrap counts), vectorised: (B,)."""
    return binned_expected_calibration_error(binned_gaps(confidence, outcome, bins), weights)


def squared_errors(labels: np.ndarray, probabilities: np.ndarray, positive_index: int) -> np.ndarray:
    """Per-sample Brier contribution: positive-class error for two classes, summed over classes otherwise."""
    if probabilities.shape[1] == 2:
        return (probabilities[:, positive_index] - (labels == positive_index)) ** 2
    one_hot = np.eye(probabilities.shape[1])[labels]
    return ((probabilities - one_hot) ** 2).sum(axis=1)


def brier_score(labels: np.ndarray, probabilities: np.ndarray, positive_index: int) -> float:
    """Brier score by scikit-learn (positive class for two classes, multi-class sum otherwise)."""

    if probabilities.shape[1] == 2:
        return float(
            brier_score_loss(labels == positive_index, probabilities[:, positive_index], pos_label=True)
        )
    return float(brier_score_loss(labels, probabilities, labels=np.arange(probabilities.shape[1])))


def weighted_brier_score(
    labels: np.ndarray, probabilities: np.ndarray, positive_index: int, weights: np.ndarray
) -> np.ndarray:
    return weighted_mean(squared_errors(labels, probabilities, positive_index), weights)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of per-sample ``values`` under each row of ``weights`` (B, N), summed row by row as the ECE is."""
    return (weights * values).sum(axis=1) / weights.sum(axis=1)
