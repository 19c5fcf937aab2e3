"""Paired differences between models evaluated on the same test samples.

Every model is bootstrapped with the same seed over the same labels, so resample ``b`` holds the
same samples for each of them; the difference of two models' values per resample is therefore a
paired bootstrap of the difference, tighter than comparing two separate intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctframe.evaluation.bootstrap import Estimate, percentile_interval
from ctframe.evaluation.results import ModelEvaluation, ModelPredictions
from ctframe.registry.settings import EvaluationSettings


@dataclass(frozen=True)
class PairedDifference:
    """``model`` minus ``reference`` for every scalar both have."""

    model: str
    reference: str
    title: str
    estimates: Mapping[str, Estimate]
    titles: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "reference": self.reference,
            "title": self.title,
            "metrics": {
                name: {"title": self.titles.get(name, name), **estimate.as_dict()}
                for name, estimate in self.estimates.items()
            },
        }


def _same_samples(first: ModelPredictions, second: ModelPredictions) -> bool:
    return tuple(first.test.sample_ids) == tuple(second.test.sample_ids) and np.array_equal(
        np.asarray(first.test.labels), np.asarray(second.test.labels)
    )


def paired_differences(
    trained: Sequence[ModelPredictions],
    evaluations: Sequence[ModelEvaluation],
    resampled: Sequence[Mapping[str, np.ndarray]],
    settings: EvaluationSettings,
) -> tuple[PairedDifference, ...]:
    """Each later model against the first one, where both were tested on the same samples."""
    if len(trained) < 2:
        return ()
    differences = []
    reference, reference_evaluation, reference_samples = trained[0], evaluations[0], resampled[0]
    reference_values = {**reference_evaluation.estimates, **reference_evaluation.calibration}
    for model, evaluation, samples in zip(trained[1:], evaluations[1:], resampled[1:], strict=True):
        if not _same_samples(reference, model):
            continue
        estimates: dict[str, Estimate] = {}
        for name, estimate in {**evaluation.estimates, **evaluation.calibration}.items():
            if name not in reference_values:
                continue
            value = estimate.value - reference_values[name].value
            if settings.bootstrap and name in samples and name in reference_samples:
                low, high = percentile_interval(samples[name] - reference_samples[name], settings.confidence)
                estimates[name] = Estimate(value, low, high)
            else:
                estimates[name] = Estimate(value)
        titles = {**evaluation.titles, "ece": "ECE", "brier": "Brier Score"}
        title = f"{evaluation.title} - {reference_evaluation.title}"
        differences.append(
            PairedDifference(evaluation.key, reference_evaluation.key, title, estimates, titles)
        )
    return tuple(differences)
