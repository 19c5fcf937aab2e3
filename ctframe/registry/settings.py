"""The recipe sections that belong to the core, not to a component: ``[run]`` and ``[evaluation]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ctframe.base.options import Options, RecipePath


class DistributedSettings(Options):
    """The ``[run.distributed]`` table; read only when torchrun starts more than one process."""

    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="process group backend: auto (nccl on CUDA, gloo on the CPU), gloo or nccl"
    )
    sync_batchnorm: Literal["auto", "on", "off"] = Field(
        "auto",
        description="BatchNorm statistics over the global batch, as on one device (SyncBatchNorm): auto "
        "(on with CUDA; off on the CPU, where torch has none), on, off (each process's share)",
    )
    timeout_minutes: float = Field(
        30, gt=0, le=1440, description="how long a process waits for the others before the run fails"
    )


class RunSettings(Options):
    """The ``[run]`` section."""

    seed: int = Field(42, ge=0, le=2**32 - 1, description="seeds python, numpy and torch")
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N",
    )
    output: Path = Field(
        Path("runs"), description="folder that receives run directories (relative: to the current directory)"
    )
    name: str | None = Field(
        None, pattern=r"^[\w.-]+$", description="run directory prefix (default: the recipe file's stem)"
    )
    weights: RecipePath | None = Field(
        None,
        description="start from these classifier weights (backbone and head): a ctframe model .json, or a "
        ".safetensors state dict of the whole classifier (e.g. from ctframe import-keras)",
    )
    cv_folds: int | None = Field(
        None, ge=2, le=100, description="set by ctframe cv: the number of cross-validation folds of this run"
    )
    cv_fold: int | None = Field(None, ge=0, description="set by ctframe cv: which fold (0-based) is test")
    distributed: DistributedSettings = Field(
        default_factory=DistributedSettings,
        description="torchrun / DDP options (docs/distributed.md); a recipe runs unchanged without them",
    )

    @model_validator(mode="after")
    def _fold_within_folds(self) -> RunSettings:
        if (self.cv_folds is None) != (self.cv_fold is None):
            raise ValueError("cv_fold and cv_folds go together (ctframe cv sets both)")
        if self.cv_fold is not None and self.cv_folds is not None and self.cv_fold >= self.cv_folds:
            raise ValueError(f"cv_fold {self.cv_fold} is not below cv_folds {self.cv_folds}")
        return self

    def fold(self) -> tuple[int, int] | None:
        return None if self.cv_fold is None or self.cv_folds is None else (self.cv_fold, self.cv_folds)


class ConformalSettings(Options):
    """The ``[evaluation] conformal`` table: split-conformal prediction sets fitted on validation."""

    alpha: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="miscoverage: each set holds the true class with probability >= 1 - alpha",
    )
    method: Literal["class_conditional", "marginal"] = Field(
        "class_conditional",
        description="'class_conditional': one quantile per class, so coverage holds for every class; "
        "'marginal': one quantile over all validation samples (coverage on average only)",
    )


PREDICTION_BATCH = 16
"""Images per prediction step for a run's evaluation, ``evaluate`` and ``predict`` alike, so that a model
file predicts the very numbers its run reported (a batch size changes float rounding)."""


class EvaluationSettings(Options):
    """The ``[evaluation]`` section: threshold choice, bootstrap confidence intervals, calibration bins and
    how predictions are computed."""

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
    aggregate: Literal["mean", "max", "topk_mean", "quantile", "noisy_or"] = Field(
        "mean",
        description="when the dataset groups its images (patients, studies, series), how a group's "
        "probability comes from its images': 'mean' (disease spread over many slices), 'max' (a focal "
        "finding in few slices; noisy, one wrong slice decides), 'topk_mean' (mean of the aggregate_k "
        "highest: focal, steadier than max), 'quantile' (the aggregate_quantile quantile: robust, between "
        "mean and max), 'noisy_or' (1 - prod(1 - p): independent slice evidence; saturates towards 1 on "
        "long scans)",
    )
    aggregate_k: int = Field(
        5,
        ge=1,
        description="with aggregate='topk_mean': how many of a group's highest probabilities are "
        "averaged (all of them in smaller groups)",
    )
    aggregate_quantile: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="with aggregate='quantile': the quantile of a group's image probabilities (linear "
        "interpolation; 0.5 the median, 1 the maximum)",
    )
    group_threshold: Literal["fixed", "youden", "sensitivity"] = Field(
        "fixed",
        description="decision threshold on the group probability: 'fixed' uses fixed_threshold; 'youden' and "
        "'sensitivity' (target_sensitivity) choose it on the validation split's groups and apply it "
        "unchanged to the test groups",
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
    calibrate: Literal["none", "temperature", "platt"] = Field(
        "none",
        description="recalibrate probabilities on the validation split (stored in the model file, applied to "
        "every later prediction): 'temperature' (one scale), 'platt' (scale and shift of the positive "
        "class's logit; two classes only, temperature otherwise), 'none'",
    )
    conformal: ConformalSettings | None = Field(
        None,
        description='split-conformal prediction sets, e.g. { alpha = 0.1, method = "class_conditional" }; '
        "a set of more than one class is an abstention (absent: off)",
    )
    subgroups: bool = Field(
        True,
        description="score the test split per value of each subgroup variable the dataset offers "
        "(ct_volumes: scanner manufacturer, reconstruction kernel, slice thickness band) into "
        "subgroups.json; false: only with evaluate/metrics --subgroups CSV",
    )
    precision: Literal["fp32", "auto", "bf16"] = Field(
        "fp32",
        description="precision of every reported prediction (validation, test, predict, evaluate); fp32 "
        "gives the same numbers on every CPU, whatever the training precision",
    )
    batch_size: int = Field(
        PREDICTION_BATCH,
        ge=1,
        description="images per prediction step: larger batches raise peak memory, not speed, on a CPU "
        "(ResNet101V2 at 224 px in fp32: about 20 MB per image)",
    )
