"""What the evaluation does with recalibration and conformal sets: fit them on validation, compare test
calibration before and after, and the console tables."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

from ctframe.evaluation import calibration
from ctframe.evaluation.bootstrap import (
    Estimate,
    group_resample_weights,
    interval,
    resample_weights,
)
from ctframe.evaluation.conformal import ConformalRule, fit_conformal
from ctframe.evaluation.outputs import format_estimate
from ctframe.evaluation.recalibrate import (
    Recalibration,
    fit_recalibration,
    negative_log_likelihood,
    per_sample_log_loss,
    recalibrated,
)
from ctframe.registry.settings import EvaluationSettings

if TYPE_CHECKING:
    from ctframe.evaluation.results import EvaluationData, EvaluationResult, ModelPredictions

CALIBRATION_SCORES = ("ece", "brier", "nll")


def calibrate_model(
    trained: ModelPredictions, data: EvaluationData, settings: EvaluationSettings
) -> tuple[ModelPredictions, Recalibration | None]:
    """``trained`` with validation and test recalibrated as the settings ask (fitted on validation only),
    and the fit; unchanged and ``None`` when calibrate is 'none' or there is no validation split (a stored
    model's probabilities already carry its own recalibration)."""
    if settings.calibrate == "none" or trained.val is None:
        return trained, None
    positive = data.positive_index
    fit = fit_recalibration(trained.val.labels, trained.val.probabilities, positive, settings.calibrate)
    return with_recalibration(trained, fit, positive), fit


def with_recalibration(
    trained: ModelPredictions, fit: Recalibration | None, positive: int
) -> ModelPredictions:
    """``trained`` with ``fit`` applied (the same numbers :func:`calibrate_model` gave: deterministic)."""
    if fit is None:
        return trained
    return replace(
        trained, val=recalibrated(trained.val, fit, positive), test=recalibrated(trained.test, fit, positive)
    )


def conformal_rule(
    trained: ModelPredictions, data: EvaluationData, settings: EvaluationSettings
) -> ConformalRule | None:
    """The model's stored rule, else one fitted on its (recalibrated) validation predictions when asked."""
    if trained.conformal is not None:
        return trained.conformal
    if settings.conformal is None or trained.val is None or len(trained.val.labels) == 0:
        return None
    val = trained.val
    conformal = settings.conformal
    return fit_conformal(val.labels, val.probabilities, data.class_names, conformal.alpha, conformal.method)


def _points(labels: np.ndarray, probabilities: np.ndarray, positive: int, bins: int) -> dict[str, float]:
    confidence, outcome = calibration.calibration_target(labels, probabilities, positive)
    return {
        "ece": calibration.expected_calibration_error(confidence, outcome, bins),
        "brier": calibration.brier_score(labels, probabilities, positive),
        "nll": negative_log_likelihood(labels, probabilities),
    }


def _resampled(
    labels: np.ndarray, probabilities: np.ndarray, positive: int, bins: int, weights: np.ndarray
) -> dict[str, np.ndarray]:
    confidence, outcome = calibration.calibration_target(labels, probabilities, positive)
    return {
        "ece": calibration.weighted_expected_calibration_error(confidence, outcome, bins, weights),
        "brier": calibration.weighted_brier_score(labels, probabilities, positive, weights),
        "nll": weights @ per_sample_log_loss(labels, probabilities) / weights.sum(axis=1),
    }


def calibration_before_after(
    labels: np.ndarray,
    raw: np.ndarray,
    calibrated: np.ndarray,
    positive: int,
    settings: EvaluationSettings,
    seed: int,
    groups: np.ndarray | None,
) -> dict[str, dict[str, Estimate]]:
    """Test ECE, Brier and log-loss of the raw and the recalibrated probabilities, with bootstrap CIs from
    the same resamples (whole groups when ``groups`` is given) as the other test metrics."""
    bins = settings.calibration_bins
    both = {"before": raw, "after": calibrated}
    points = {when: _points(labels, p, positive, bins) for when, p in both.items()}
    if not settings.bootstrap:
        return {when: {name: Estimate(v) for name, v in values.items()} for when, values in points.items()}
    blocks = (
        resample_weights(labels, settings.bootstrap, seed)
        if groups is None
        else group_resample_weights(labels, groups, settings.bootstrap, seed)
    )
    samples: dict[str, dict[str, list[np.ndarray]]] = {when: {} for when in both}
    for weights in blocks:
        for when, p in both.items():
            for name, block in _resampled(labels, p, positive, bins, weights).items():
                samples[when].setdefault(name, []).append(block)
    return {
        when: {
            name: Estimate(
                value, *interval(name, value, np.concatenate(samples[when][name]), settings.confidence)
            )
            for name, value in points[when].items()
        }
        for when in both
    }


def calibration_fit_table(result: EvaluationResult) -> Table | None:
    """Test ECE, Brier and log-loss before and after recalibration; ``None`` when nothing was fitted."""
    fitted = [m for m in result.models if m.recalibration is not None and m.calibration_test]
    if not fitted:
        return None
    table = Table(title="Recalibration (fitted on validation; test before -> after)")
    table.add_column("Model", style="bold")
    table.add_column("Method")
    for name in ("ECE", "Brier Score", "Log-Loss"):
        table.add_column(name, justify="right")
    for model in fitted:
        fit = model.recalibration
        assert fit is not None
        short = {"temperature": "T", "scale": "a", "shift": "b"}
        parameters = " ".join(f"{short.get(k, k)}={v:.3g}" for k, v in fit.parameters.items())
        before, after = model.calibration_test["before"], model.calibration_test["after"]
        cells = [
            f"{format_estimate(before[name])}\n-> {format_estimate(after[name])}"
            for name in CALIBRATION_SCORES
        ]
        table.add_row(model.title, f"{fit.method}\n{parameters}", *cells)
    return table


def _share(entry: dict[str, Any]) -> str:
    if entry.get("value") is None:
        return "n/a"
    return format_estimate(Estimate(entry["value"], entry["ci_low"], entry["ci_high"]), compact=True)


def conformal_table(result: EvaluationResult) -> Table | None:
    """Conformal coverage per class, abstention and accuracy on decided cases; ``None`` when off."""
    rows = [m for m in result.models if m.conformal_summary]
    if not rows:
        return None
    first = rows[0].conformal_summary
    table = Table(
        title=f"Conformal prediction sets (test; alpha {first['alpha']}, {first['method']}, "
        f"target coverage {first['target_coverage']:.2f})",
        caption=first["interval"],
    )
    table.add_column("Model", style="bold")
    for name in result.class_names:
        table.add_column(f"Coverage {name}", justify="right", overflow="fold")
    for name in ("Abstention (>1 class)", "Empty Set", "Accuracy Decided"):
        table.add_column(name, justify="right", overflow="fold")
    for model in rows:
        summary = model.conformal_summary
        coverage = [_share(summary["per_class"][name]["coverage"]) for name in result.class_names]
        rest = (summary["abstention_rate"], summary["empty_rate"], summary["accuracy_decided"])
        table.add_row(model.title, *coverage, *(_share(entry) for entry in rest))
    return table
