"""The recalibration formulas a model file's ``calibration`` record names, in numpy only (no torch): the
one implementation that fitting (:mod:`ctframe.evaluation.recalibrate`) and every later prediction
(:mod:`ctframe.runtime.inference`) use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ctframe.storage.modelfile import ModelFileError

SMALLEST_PROBABILITY = 1e-30
"""Probabilities are clipped here before taking logs: a float32 softmax can underflow to exactly 0."""


def calibrated_probabilities(
    probabilities: np.ndarray, calibration: Mapping[str, Any] | None, positive_index: int
) -> np.ndarray:
    """``probabilities`` (N, K) recalibrated as a model file's ``calibration`` record says.

    'temperature': softmax(log p / T) (for two classes: the positive logit divided by T); 'platt':
    sigmoid(scale * logit + shift) on the positive class (two classes). 'none' or no record: unchanged.
    The one implementation of the formulas, used by fitting (evaluation) and by every later prediction.
    """
    method = "none" if not calibration else str(calibration.get("method", "none"))
    if method == "none":
        return probabilities
    logs = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), SMALLEST_PROBABILITY, None))
    try:
        if method == "temperature":
            scaled = logs / float(calibration["temperature"])  # type: ignore[index]
            scaled -= scaled.max(axis=1, keepdims=True)
            weights = np.exp(scaled)
            return weights / weights.sum(axis=1, keepdims=True)
        if method == "platt" and logs.shape[1] == 2:
            logit = logs[:, positive_index] - logs[:, 1 - positive_index]
            scaled = float(calibration["scale"]) * logit + float(calibration["shift"])  # type: ignore[index]
            positive = 1.0 / (1.0 + np.exp(-scaled))
            result = np.empty_like(logs)
            result[:, positive_index], result[:, 1 - positive_index] = positive, 1.0 - positive
            return result
    except (KeyError, TypeError, ValueError):
        pass
    raise ModelFileError(
        f"calibration record {dict(calibration or {})} is not one this ctframe applies (temperature with "
        "'temperature', or platt with 'scale' and 'shift' for two classes); the model file was edited"
    )
