"""The ``[evaluation]`` section of a recipe: how the decision threshold is chosen and how sure we are."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe.base.options import Options


class EvaluationSettings(Options):
    """Threshold choice, bootstrap confidence intervals and calibration bins."""

    threshold: Literal["fixed", "youden", "sensitivity"] = Field(
        "fixed",
        description="decision threshold: 'fixed' uses fixed_threshold; 'youden' and 'sensitivity' choose it "
        "on the validation split and apply it unchanged to test",
    )
    fixed_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="threshold on the positive class's probability when threshold='fixed'",
    )
    target_sensitivity: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="with threshold='sensitivity': highest threshold reaching this validation sensitivity",
    )
    bootstrap: int = Field(
        1000,
        ge=0,
        description="stratified bootstrap resamples for confidence intervals (0: none; use >= 1000)",
    )
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="confidence level of the bootstrap intervals")
    calibration_bins: int = Field(
        10, ge=2, le=100, description="equal-width probability bins for the expected calibration error"
    )
    precision: Literal["fp32", "auto", "bf16"] = Field(
        "fp32",
        description="precision of every reported prediction (validation, test, predict, evaluate); fp32 "
        "gives the same numbers on every CPU, whatever the training precision",
    )
    batch_size: int = Field(
        32, ge=1, description="images per prediction step (larger batches raise peak memory, not speed)"
    )
