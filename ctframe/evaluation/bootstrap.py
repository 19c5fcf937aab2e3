"""Stratified bootstrap confidence intervals, vectorised over resamples.

A resample is drawn with replacement within each true class, so every resample keeps the test
set's class counts (and a metric like ROC AUC stays defined). Resamples are represented as counts
per sample, shape ``(B, N)``: a metric evaluated with those counts as sample weights equals the
metric on the resampled rows. Metrics that offer ``batched(inputs, weights)`` get all resamples in
a few matrix operations; others are called once per resample.

Memory is bounded by design: the random stream is consumed in chunks of ``CHUNK`` resamples, class by
class, and each chunk is handed out in blocks of at most ``BLOCK_BYTES`` of weights, replaying the
noted generator states. The draws, and so every interval, do not depend on the block size, and the
peak does not grow with the number of resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ctframe.base.contracts import MetricInput

CHUNK = 250
"""Resamples drawn together from the random stream, class by class: fixes the numbers each one gets."""

BLOCK_BYTES = 256 * 2**20
"""Most one block of float64 weights (b x N) may take. Metrics make a few block-sized temporaries, so the
bootstrap's peak stays about ``PEAK_BLOCKS`` times this whatever the number of resamples. Smaller blocks
cost time: each block repeats the metrics' per-call work (sorting the scores for the AUCs), about 4 s
per block at 3.5M samples, so 64 MiB would add ~40 minutes to 1000 resamples there, 256 MiB ~8."""

PEAK_BLOCKS = 4
"""Peak working memory of the bootstrap in blocks (measured with tracemalloc: about 3.4)."""


def block_resamples(samples: int) -> int:
    """Resamples per block for ``samples`` rows: at least one, at most ``CHUNK``."""
    return max(1, min(CHUNK, BLOCK_BYTES // (8 * max(samples, 1))))


def bootstrap_peak_bytes(samples: int, resamples: int) -> int:
    """Estimated peak working memory of bootstrapping ``samples`` rows: bounded, whatever ``resamples``."""
    return PEAK_BLOCKS * 8 * samples * min(block_resamples(samples), resamples)


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


@dataclass(frozen=True)
class _Stratum:
    """One true class: its samples, the bootstrap unit of each (``None``: every sample its own), units."""

    members: np.ndarray
    unit_of: np.ndarray | None
    units: int


def _strata(labels: np.ndarray, groups: np.ndarray | None = None) -> list[_Stratum]:
    strata = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if groups is None:
            strata.append(_Stratum(members, None, len(members)))
            continue
        # Units numbered by first appearance, so singleton groups draw exactly as single samples do.
        _, first, unit_of = np.unique(groups[members], return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        strata.append(_Stratum(members, rank[unit_of.ravel()], len(first)))
    return strata


def _fill(counts: np.ndarray, stratum: _Stratum, drawn: np.ndarray) -> None:
    """Write into ``counts`` (b, N) how often each member of ``stratum`` was drawn in each row."""
    rows, units = drawn.shape
    drawn += (np.arange(rows) * units)[:, None]
    unit_counts = np.bincount(drawn.ravel(), minlength=rows * units).reshape(rows, units)
    counts[:, stratum.members] = unit_counts if stratum.unit_of is None else unit_counts[:, stratum.unit_of]


def _counts(strata: list[_Stratum], size: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.zeros((resamples, size), dtype=np.int64)
    for stratum in strata:
        _fill(counts, stratum, rng.integers(0, stratum.units, size=(resamples, stratum.units)))
    return counts


def _generator_at(state: dict[str, Any], like: np.random.Generator) -> np.random.Generator:
    bit_generator = type(like.bit_generator)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _blocks(strata: list[_Stratum], size: int, resamples: int, seed: int, block: int) -> Iterator[np.ndarray]:
    """Float weights in blocks of ``block`` rows, the same numbers whatever ``block`` is."""
    rng = np.random.default_rng(seed)
    for chunk_start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - chunk_start)
        if block >= rows:
            yield _counts(strata, size, rows, rng).astype(np.float64)
            continue
        # A chunk draws class after class, so a block needs a state from the middle of each class's
        # draws: note them in a first pass (drawing block by block, never the whole chunk), then replay.
        starts = range(0, rows, block)
        states = []
        for stratum in strata:
            for start in starts:
                states.append(rng.bit_generator.state)
                rng.integers(0, stratum.units, size=(min(block, rows - start), stratum.units))
        for position, start in enumerate(starts):
            weights = np.zeros((min(block, rows - start), size))
            for number, stratum in enumerate(strata):
                replay = _generator_at(states[number * len(starts) + position], rng)
                _fill(weights, stratum, replay.integers(0, stratum.units, size=(len(weights), stratum.units)))
            yield weights


def stratified_counts(labels: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each sample appears in each of ``resamples`` stratified resamples: int (B, N)."""
    return _counts(_strata(labels), len(labels), resamples, rng)


def resample_weights(
    labels: np.ndarray, resamples: int, seed: int, block: int | None = None
) -> Iterator[np.ndarray]:
    """Blocks of float weights (b, N), reproducible from ``seed`` alone; ``block`` (default: from
    ``BLOCK_BYTES``) changes only how the rows are cut into blocks, never their values."""
    labels = np.asarray(labels)
    block = block or block_resamples(len(labels))
    return _blocks(_strata(labels), len(labels), resamples, seed, block)


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


BIASED_UPWARD = frozenset({"ece"})
"""Statistics whose resampled values run above the sample's own: the binned ECE sums absolute gaps, and
resampling (duplicated rows, fewer distinct ones per bin) widens the gaps, so its percentile interval can
lie wholly above the point (an out-of-fold ECE of 0.005 with 0.009-0.151). Their interval is taken from
the resamples shifted by the bootstrap's estimate of that bias (mean of the resamples minus the point),
clipped at 0: docs/metrics.md, "Confidence intervals"."""


def interval(name: str, value: float, samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of ``samples``, bias-shifted for :data:`BIASED_UPWARD` statistics."""
    if name in BIASED_UPWARD and np.isfinite(value):
        finite = samples[np.isfinite(samples)]
        if finite.size:
            low, high = percentile_interval(finite - (finite.mean() - value), confidence)
            return max(low, 0.0), max(high, 0.0)
    return percentile_interval(samples, confidence)


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
    return _counts(_strata(labels, groups), len(labels), resamples, rng)


def group_resample_weights(
    labels: np.ndarray,
    groups: Sequence[Hashable] | np.ndarray,
    resamples: int,
    seed: int,
    block: int | None = None,
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
    block = block or block_resamples(len(labels))
    return _blocks(_strata(labels, group_array), len(labels), resamples, seed, block)


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
