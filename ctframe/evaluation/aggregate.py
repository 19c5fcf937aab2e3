"""Image probabilities to one probability per group (patient, study, series): the group-level answer.

Two classes: the positive class's probability is aggregated and the other class gets its complement,
so the group threshold means what the image threshold means. More classes: every class's column is
aggregated by the same rule and each group's row is divided by its sum (a no-op for ``mean``, whose rows
already sum to 1; for the other rules it turns per-class evidence into a distribution, and ``noisy_or``
drifts towards uniform on long groups). docs/metrics.md, "The unit of decision", says when each fits.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from ctframe.base.errors import DataError
from ctframe.base.filenames import ensure_escaped
from ctframe.base.training import Predictions
from ctframe.registry.settings import EvaluationSettings

AGGREGATIONS = ("mean", "max", "topk_mean", "quantile", "noisy_or")


@dataclass(frozen=True)
class Aggregation:
    """How a group's probability comes from its images': ``method`` and its parameter."""

    method: str = "mean"
    k: int = 5
    """``topk_mean``: the mean of the ``k`` highest probabilities (all of them in smaller groups)."""
    quantile: float = 0.9
    """``quantile``: this quantile of the group's probabilities, numpy's linear interpolation."""

    def __post_init__(self) -> None:
        if self.method not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.method!r}; use one of {', '.join(AGGREGATIONS)}")
        if self.k < 1 or not 0.0 <= self.quantile <= 1.0:
            raise ValueError(
                f"need k >= 1 and a quantile in [0, 1]; got k={self.k}, quantile={self.quantile}"
            )

    @classmethod
    def from_settings(cls, settings: EvaluationSettings) -> Aggregation:
        return cls(settings.aggregate, settings.aggregate_k, settings.aggregate_quantile)

    def describe(self) -> str:
        """``"mean of images"``, ``"mean of the 5 highest images"``, ... for headings."""
        return {
            "mean": "mean of images",
            "max": "max of images",
            "topk_mean": f"mean of the {self.k} highest images",
            "quantile": f"{self.quantile:g} quantile of images",
            "noisy_or": "noisy-OR of images",
        }[self.method]

    def as_dict(self) -> dict[str, object]:
        """The method and only the parameter it uses."""
        extra: dict[str, object] = {"topk_mean": {"k": self.k}, "quantile": {"quantile": self.quantile}}.get(
            self.method, {}
        )
        return {"method": self.method, **extra}


def plural(unit: str) -> str:
    """``patient`` -> ``patients``, ``study`` -> ``studies``, ``series`` -> ``series``."""
    if unit.endswith("s"):
        return unit
    if unit.endswith("y") and unit[-2:-1] not in ("a", "e", "i", "o", "u"):
        return unit[:-1] + "ies"
    return unit + "s"


def aggregate(
    scores: np.ndarray, groups: Sequence[Hashable] | np.ndarray, how: Aggregation
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group ids (G,) sorted, aggregated score (G,) float64, images per group (G,) int64)``.

    ``scores[i]`` (a probability in [0, 1]) belongs to group ``groups[i]``; group ids are compared as strings.
    """
    values = np.asarray(scores, dtype=np.float64)
    keys = np.asarray([str(group) for group in groups])
    if values.ndim != 1 or keys.shape != values.shape:
        raise ValueError(
            f"need one group per score: {keys.shape[0]} groups for scores of shape {values.shape}"
        )
    ids, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    if how.method == "mean":
        return ids, np.bincount(inverse, weights=values, minlength=len(ids)) / counts, counts
    if how.method == "noisy_or":  # 1 - prod(1 - p) as -expm1(sum log1p(-p)): no underflow, exact near 0
        with np.errstate(divide="ignore"):  # p = 1 gives log 0 = -inf, and the group 1, as it should
            logs = np.log1p(-np.clip(values, 0.0, 1.0))
        return ids, -np.expm1(np.bincount(inverse, weights=logs, minlength=len(ids))), counts
    ordered = values[np.lexsort((values, inverse))]  # by group, ascending within each group
    ends = np.cumsum(counts)
    if how.method == "max":
        return ids, ordered[ends - 1], counts
    segments = np.split(ordered, ends[:-1])
    if how.method == "topk_mean":
        return ids, np.array([segment[-how.k :].mean() for segment in segments]), counts
    return ids, np.array([np.quantile(segment, how.quantile) for segment in segments]), counts


def group_labels(labels: np.ndarray, groups: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The one true class of each group in ``ids`` (sorted), or a :class:`DataError` when a group holds
    images of two classes (a group-level answer needs one truth per group)."""
    keys = np.asarray([str(group) for group in groups])
    inverse = np.searchsorted(ids, keys)
    labels = np.asarray(labels, dtype=np.int64)
    low = np.full(len(ids), np.iinfo(np.int64).max)
    high = np.full(len(ids), np.iinfo(np.int64).min)
    np.minimum.at(low, inverse, labels)
    np.maximum.at(high, inverse, labels)
    mixed = np.flatnonzero(low != high)
    if mixed.size:
        shown = ", ".join(ensure_escaped(str(ids[i])) for i in mixed[:3])
        more = f" and {mixed.size - 3} more" if mixed.size > 3 else ""
        raise DataError(
            f"{mixed.size} group(s) hold images of more than one true class ({shown}{more}); a group-level "
            "answer needs one class per group: fix the grouping (group_by) or the images' classes"
        )
    return low


@dataclass(frozen=True)
class GroupedPredictions:
    """One row per group: ``predictions.sample_ids`` are the group ids."""

    predictions: Predictions
    counts: np.ndarray
    """Images per group."""


def group_predictions(
    predictions: Predictions, groups: np.ndarray, positive_index: int, how: Aggregation
) -> GroupedPredictions:
    """Each group's aggregated probabilities (rows summing to 1) and its one true label."""
    probabilities = np.asarray(predictions.probabilities, dtype=np.float64)
    if probabilities.shape[1] == 2:
        ids, positive, counts = aggregate(probabilities[:, positive_index], groups, how)
        grouped = np.empty((len(ids), 2))
        grouped[:, positive_index] = positive
        grouped[:, 1 - positive_index] = 1.0 - positive
    else:
        columns = [aggregate(probabilities[:, c], groups, how) for c in range(probabilities.shape[1])]
        ids, counts = columns[0][0], columns[0][2]
        grouped = np.stack([column[1] for column in columns], axis=1)
        totals = grouped.sum(axis=1, keepdims=True)
        # A zero row (quantile 0 of images that each rule out a different class): no evidence, uniform.
        grouped = np.where(totals > 0, grouped / np.where(totals > 0, totals, 1.0), 1.0 / grouped.shape[1])
    labels = group_labels(predictions.labels, groups, ids)
    return GroupedPredictions(Predictions(tuple(str(i) for i in ids), labels, grouped), counts)
