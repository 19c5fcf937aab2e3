"""The ECE's interval contains its own estimate (issue 25, item 3): on a well calibrated sample the
resampled ECEs all lie above the sample's, so a plain percentile interval excludes the point; the
bias-shifted interval does not. fp64 numpy, seeded."""

from __future__ import annotations

import numpy as np

from ctframe.base.contracts import MetricInput
from ctframe.evaluation import EvaluationSettings
from ctframe.evaluation.bootstrap import interval, percentile_interval
from ctframe.evaluation.scores import score


def _calibrated(n: int = 400, seed: int = 0) -> MetricInput:
    """Four stated probabilities, each borne out exactly by its share of positives: the sample's ECE is
    near 0 while every resample's, with its own random shares, is larger."""
    rng = np.random.default_rng(seed)
    p = rng.choice([0.2, 0.4, 0.6, 0.8], n)
    labels = np.zeros(n, dtype=int)
    for value in (0.2, 0.4, 0.6, 0.8):
        rows = np.flatnonzero(p == value)
        labels[rng.permutation(rows)[: round(value * len(rows))]] = 1
    return MetricInput(labels, np.stack([1 - p, p], axis=1), ("a", "b"), 1, 0.5)


def test_a_calibrated_samples_ece_lies_inside_its_interval():
    inputs = _calibrated()
    scores = score("test", [], inputs, EvaluationSettings(bootstrap=300), 3)
    ece = scores.calibration["ece"]
    assert ece.low <= ece.value <= ece.high
    plain = percentile_interval(scores.resampled["ece"], 0.95)
    assert plain[0] > ece.value  # the old interval lay wholly above the point: the case the fix is for
    assert ece.high > ece.low


def test_other_statistics_keep_the_plain_percentile_interval():
    samples = np.linspace(0.2, 0.4, 101)
    assert interval("brier", 0.1, samples, 0.9) == percentile_interval(samples, 0.9)
    low, high = interval("ece", 0.01, samples, 0.9)
    assert low == 0.0 and 0.0 < high < 0.2  # shifted down by the bias (0.29), clipped at 0
