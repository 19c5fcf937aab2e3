"""Recalibrating probabilities after training: temperature or Platt scaling, fitted on validation only.

Both minimise the validation negative log-likelihood (NLL) in float64 with bounded parameters, so a
separable validation split (NLL falling towards 0 as the scale grows) stops at a bound instead of
diverging; a tiny L2 term keeps the optimum unique. Temperature scaling divides the log-probabilities
by one T > 0 (for two classes: the positive logit) and never changes the ranking or the most probable
class; Platt scaling fits a scale AND a shift of the positive class's logit (two classes only), which
also undoes a shift of the whole score distribution. The formulas are applied by
:func:`ctframe.runtime.recalibration.calibrated_probabilities`, the same code every later prediction uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ctframe.base.training import Predictions
from ctframe.runtime.recalibration import SMALLEST_PROBABILITY, calibrated_probabilities

TEMPERATURE_BOUNDS = (0.02, 50.0)
SCALE_BOUNDS = (1e-3, 100.0)
SHIFT_BOUNDS = (-30.0, 30.0)
L2 = 1e-6
"""Weight of the tiny penalty on log T, or on (scale - 1) and shift: unique optimum, no effect otherwise."""


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean -log p(true class) (log-loss), probabilities clipped at 1e-30."""
    if len(labels) == 0:
        return float("nan")
    true = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(true, SMALLEST_PROBABILITY, None)).mean())


def per_sample_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    true = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return -np.log(np.clip(true, SMALLEST_PROBABILITY, None))


@dataclass(frozen=True)
class Recalibration:
    """A fitted recalibration: what the model file stores, and how validation NLL changed."""

    method: str
    """'none', 'temperature' or 'platt'."""
    parameters: Mapping[str, float] = field(default_factory=dict)
    nll_before: float | None = None
    nll_after: float | None = None
    note: str | None = None
    """Why the requested method was not fitted as asked (one class in validation, platt on 3 classes)."""

    def record(self) -> dict[str, Any]:
        """The model file's ``calibration`` entry."""
        return {"method": self.method, **self.parameters, "fitted_on": "val"}

    def apply(self, probabilities: np.ndarray, positive_index: int) -> np.ndarray:
        return calibrated_probabilities(probabilities, self.record(), positive_index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "parameters": dict(self.parameters),
            "fitted_on": "val",
            "validation_nll": {"before": self.nll_before, "after": self.nll_after},
            "note": self.note,
        }


def _fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    def loss(log_t: float) -> float:
        calibrated = calibrated_probabilities(
            probabilities, {"method": "temperature", "temperature": np.exp(log_t)}, 0
        )
        return negative_log_likelihood(labels, calibrated) + L2 * log_t**2

    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return {"temperature": float(np.exp(found.x))}


def _fit_platt(labels: np.ndarray, probabilities: np.ndarray, positive_index: int) -> dict[str, float]:
    logs = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), SMALLEST_PROBABILITY, None))
    logit = logs[:, positive_index] - logs[:, 1 - positive_index]
    outcome = (np.asarray(labels) == positive_index).astype(np.float64)

    def loss_and_gradient(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        scale, shift = parameters
        z = scale * logit + shift
        # log(1 + e^z) - y z, the logistic NLL, stable for large |z|
        loss = np.mean(np.logaddexp(0.0, z) - outcome * z) + L2 * ((scale - 1.0) ** 2 + shift**2)
        error = 1.0 / (1.0 + np.exp(-z)) - outcome
        gradient = np.array(
            [np.mean(error * logit) + 2 * L2 * (scale - 1.0), np.mean(error) + 2 * L2 * shift]
        )
        return float(loss), gradient

    found = minimize(
        loss_and_gradient,
        np.array([1.0, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[SCALE_BOUNDS, SHIFT_BOUNDS],
    )
    return {"scale": float(found.x[0]), "shift": float(found.x[1])}


def fit_recalibration(
    labels: np.ndarray, probabilities: np.ndarray, positive_index: int, method: str
) -> Recalibration:
    """Fit ``method`` on validation ``labels`` and ``probabilities`` (N, K).

    'platt' with more than two classes fits temperature scaling instead (noted); a validation split
    with fewer than two classes present cannot be fitted: 'none', noted.
    """
    if method == "none":
        return Recalibration("none")
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        note = (
            f"validation holds fewer than two classes, so no {method} scaling can be fitted; not recalibrated"
        )
        return Recalibration("none", note=note)
    note = None
    if method == "platt" and probabilities.shape[1] != 2:
        note = f"platt scaling needs two classes, this model has {probabilities.shape[1]}: fitted temperature"
        method = "temperature"
    parameters = (
        _fit_temperature(labels, probabilities)
        if method == "temperature"
        else _fit_platt(labels, probabilities, positive_index)
    )
    fitted = Recalibration(method, parameters, note=note)
    after = negative_log_likelihood(labels, fitted.apply(probabilities, positive_index))
    return replace(fitted, nll_before=negative_log_likelihood(labels, probabilities), nll_after=after)


def recalibrated(
    predictions: Predictions | None, fit: Recalibration, positive_index: int
) -> Predictions | None:
    """``predictions`` with ``fit`` applied to their probabilities (unchanged for 'none')."""
    if predictions is None or fit.method == "none":
        return predictions
    return replace(predictions, probabilities=fit.apply(predictions.probabilities, positive_index))
