"""Stratified bootstrap confidence intervals, vectorised over resamples.

A resample is drawn with replacement within each true class, so every resample keeps the test
set's class counts (and a metric like ROC AUC stays defined). Resamples are represented as counts
per sample, shape ``(B, N)``: a metric evaluated with those counts as sample weights equals the
metric on the resampled rows. Metrics that offer ``batched(inputs, weights)`` get all resamples in
a few matrix operations; others are called once per resample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np

from ctframe.contracts import MetricInput

CHUNK = 250
"""Resamples per block: bounds memory at CHUNK x N weights for large test sets."""


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float | None = None
    high: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "value": _finite_or_none(self.value),
            "ci_low": _finite_or_none(self.low),
            "ci_high": _finite_or_none(self.high),
        }


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def stratified_counts(labels: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each sample appears in each of ``resamples`` stratified resamples: int (B, N)."""
    size = len(labels)
    counts = np.zeros(resamples * size, dtype=np.int64)
    row_offsets = (np.arange(resamples) * size)[:, None]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        drawn = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        counts += np.bincount((drawn + row_offsets).ravel(), minlength=resamples * size)
    return counts.reshape(resamples, size)


def resample_weights(labels: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of float weights (b, N), reproducible from ``seed`` alone."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        yield stratified_counts(labels, min(CHUNK, resamples - start), rng).astype(np.float64)


BatchedMetric = Callable[[MetricInput, np.ndarray], Mapping[str, np.ndarray]]


def looped(metric: Callable[[MetricInput], Mapping[str, object]]) -> BatchedMetric:
    """Bootstrap a plain metric by calling it on each resample (slow, but works for any metric)."""

    def batched(inputs: MetricInput, weights: np.ndarray) -> dict[str, np.ndarray]:
        columns: dict[str, list[float]] = {}
        rows = np.arange(weights.shape[1])
        for row_weights in weights:
            picked = np.repeat(rows, row_weights.astype(np.int64))
            values = metric(
                replace(inputs, labels=inputs.labels[picked], probabilities=inputs.probabilities[picked])
            )
            for name, value in values.items():
                if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool):
                    columns.setdefault(name, []).append(float(value))
        return {name: np.asarray(column) for name, column in columns.items()}

    return batched


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval ignoring resamples where the metric is undefined (NaN)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)
