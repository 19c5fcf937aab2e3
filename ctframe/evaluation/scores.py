"""Scoring one set of predictions (images or groups): metric values, calibration and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctframe.base.contracts import Metric, MetricInput
from ctframe.base.errors import CtframeError
from ctframe.evaluation import calibration
from ctframe.evaluation.bootstrap import (
    Estimate,
    group_resample_weights,
    interval,
    looped,
    resample_weights,
)
from ctframe.evaluation.decision import checked_arrays
from ctframe.registry.settings import EvaluationSettings

WARNINGS_KEY = "warnings"
"""A metric may return a list of strings under this name (for example "ROC AUC undefined")."""


def _default_title(name: str) -> str:
    return name.replace("_", " ").title()


def point_values(
    metrics: Sequence[tuple[str, Metric]], inputs: MetricInput
) -> tuple[dict[str, float], dict[str, Any], dict[str, str], dict[str, str], list[str]]:
    """Scalars, other values, titles, owning metric per scalar, warnings."""
    scalars: dict[str, float] = {}
    others: dict[str, Any] = {}
    titles: dict[str, str] = {}
    owners: dict[str, str] = {}
    warnings: list[str] = []
    for metric_name, metric in metrics:
        metric_titles: Mapping[str, str] = getattr(metric, "titles", {}) or {}
        for name, value in metric(inputs).items():
            if name == WARNINGS_KEY:
                warnings.extend(str(w) for w in value)
                continue
            if name in scalars or name in others:
                warnings.append(
                    f"metric {metric_name!r} repeats the value name {name!r}; the later one is ignored"
                )
                continue
            if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool):
                scalars[name] = float(value)
                owners[name] = metric_name
                titles[name] = metric_titles.get(name, _default_title(name))
            else:
                others[name] = value
    return scalars, others, titles, owners, warnings


def bootstrap_values(
    metrics: Sequence[tuple[str, Metric]],
    inputs: MetricInput,
    settings: EvaluationSettings,
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Resampled values per scalar name (metrics and calibration), all from the same resamples:
    whole groups when ``groups`` is given (a cluster bootstrap), single samples otherwise. The weights
    come in blocks sized from the test set (:data:`~ctframe.evaluation.bootstrap.BLOCK_BYTES`) and
    only the values per resample are kept, so memory does not grow with the resamples."""
    labels, probabilities = inputs.labels, inputs.probabilities
    confidence, outcome = calibration.calibration_target(labels, probabilities, inputs.positive_index)
    binned = calibration.binned_gaps(confidence, outcome, settings.calibration_bins)
    squared = calibration.squared_errors(labels, probabilities, inputs.positive_index)
    samples: dict[str, list[np.ndarray]] = {}
    batched = [getattr(metric, "batched", None) or looped(metric) for _, metric in metrics]
    blocks_of_weights = (
        resample_weights(labels, settings.bootstrap, seed)
        if groups is None
        else group_resample_weights(labels, groups, settings.bootstrap, seed)
    )
    for weights in blocks_of_weights:
        blocks: dict[str, np.ndarray] = {}
        for compute in batched:
            blocks.update({k: v for k, v in compute(inputs, weights).items() if k != WARNINGS_KEY})
        blocks["ece"] = calibration.binned_expected_calibration_error(binned, weights)
        blocks["brier"] = calibration.weighted_mean(squared, weights)
        for name, block in blocks.items():
            samples.setdefault(name, []).append(np.asarray(block, dtype=np.float64))
    return {name: np.concatenate(blocks) for name, blocks in samples.items()}


def with_interval(
    value: float, samples: np.ndarray | None, settings: EvaluationSettings, name: str = ""
) -> Estimate:
    if samples is None or settings.bootstrap == 0:
        return Estimate(value)
    return Estimate(value, *interval(name, value, samples, settings.confidence))


def calibration_points(inputs: MetricInput, bins: int) -> dict[str, float]:
    """Expected calibration error and Brier score of the test predictions."""
    labels, probabilities, positive = inputs.labels, inputs.probabilities, inputs.positive_index
    confidence, outcome = calibration.calibration_target(labels, probabilities, positive)
    return {
        "ece": calibration.expected_calibration_error(confidence, outcome, bins),
        "brier": calibration.brier_score(labels, probabilities, positive),
    }


@dataclass(frozen=True)
class Scores:
    """Checked inputs, every scalar with its interval, the other metric values, and the resamples."""

    inputs: MetricInput
    estimates: dict[str, Estimate]
    titles: dict[str, str]
    calibration: dict[str, Estimate]
    values: dict[str, Any]
    warnings: list[str]
    resampled: dict[str, np.ndarray]


def score(
    where: str,
    metrics: Sequence[tuple[str, Metric]],
    inputs: MetricInput,
    settings: EvaluationSettings,
    seed: int,
    groups: np.ndarray | None = None,
) -> Scores:
    """Point values, calibration and (``settings.bootstrap`` > 0) percentile intervals; input errors are
    raised with ``where`` ("Fine-Tuned Model, test split") in front."""
    try:
        labels, probabilities = checked_arrays(inputs)
        inputs = MetricInput(
            labels, probabilities, inputs.class_names, inputs.positive_index, inputs.threshold
        )
        scalars, others, titles, _, warnings = point_values(metrics, inputs)
    except CtframeError as error:
        raise type(error)(f"{where}: {error}") from None
    points = calibration_points(inputs, settings.calibration_bins)
    resampled = bootstrap_values(metrics, inputs, settings, seed, groups) if settings.bootstrap else {}
    return Scores(
        inputs,
        {name: with_interval(v, resampled.get(name), settings) for name, v in scalars.items()},
        titles,
        {name: with_interval(v, resampled.get(name), settings, name) for name, v in points.items()},
        others,
        warnings,
        resampled,
    )
