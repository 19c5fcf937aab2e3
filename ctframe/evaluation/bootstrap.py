"""Stratified bootstrap confidence intervals, vectorised over resamples.

A resample is drawn with replacement within each true class, so every resample keeps the test
set's class counts (and a metric like ROC AUC stays defined). Resamples are represented as counts
per sample, shape ``(B, N)``: a metric evaluated with those counts as sample weights equals the
metric on the resampled rows. Metrics that offer ``batched(inputs, weights)`` get all resamples in
a few matrix operations; others are called once per resample.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ctframe.base.contracts import MetricInput

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


def stratified_group_counts(
    labels: np.ndarray, groups: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Cluster-bootstrap counts, int (B, N): within each true class, whole groups are drawn with replacement.

    The units are (class, group) pairs, so every resample keeps the number of groups of each class (a
    group spanning two classes, such as a patient id in two class folders, becomes one unit per class).
    Each sample appears as often as its unit was drawn. With one sample per group this equals
    :func:`stratified_counts` for the same generator state.
    """
    size = len(labels)
    counts = np.zeros((resamples, size), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        # Units numbered by first appearance, so singleton groups draw exactly as stratified_counts does.
        _, first, unit_of = np.unique(groups[members], return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        unit_of = rank[unit_of.ravel()]
        units = len(first)
        drawn = rng.integers(0, units, size=(resamples, units))
        offsets = (np.arange(resamples) * units)[:, None]
        unit_counts = np.bincount((drawn + offsets).ravel(), minlength=resamples * units)
        counts[:, members] = unit_counts.reshape(resamples, units)[:, unit_of]
    return counts


def group_resample_weights(
    labels: np.ndarray, groups: Sequence[Hashable] | np.ndarray, resamples: int, seed: int
) -> Iterator[np.ndarray]:
    """Like :func:`resample_weights`, but resampling whole groups (a stratified cluster bootstrap).

    ``groups[i]`` is the group (patient, scan sequence) of sample ``i``; samples of one group are not
    independent, so drawing them one by one makes intervals too narrow. Blocks of float weights (b, N),
    reproducible from ``seed`` (and the same for every model scored on the same samples, so paired
    differences stay paired). Raises ``ValueError`` when ``groups`` does not give one group per sample.
    """
    labels = np.asarray(labels)
    group_array = np.asarray([str(group) for group in groups])
    if group_array.shape != labels.shape:
        raise ValueError(f"need one group per sample: {len(group_array)} groups for {len(labels)} labels")
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        block = stratified_group_counts(labels, group_array, min(CHUNK, resamples - start), rng)
        yield block.astype(np.float64)


def sample_groups(sample_ids: Sequence[str], groups: Mapping[str, str]) -> np.ndarray | None:
    """The group of each sample from ``DataSplits.groups``, or ``None`` when it is empty (independent
    samples: use :func:`resample_weights`). Raises ``ValueError`` naming samples that have no group."""
    if not groups:
        return None
    missing = [sample_id for sample_id in sample_ids if sample_id not in groups]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} sample(s) have no group in DataSplits.groups: {shown}")
    return np.asarray([groups[sample_id] for sample_id in sample_ids])
