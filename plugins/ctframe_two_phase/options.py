"""Options of the two-phase trainer: one table per phase plus the shared speed settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ctframe import Options


class PhaseOptions(Options):
    """One training phase: optimiser, learning-rate schedule, length and the early-stopping callback."""

    epochs: int = Field(20, ge=0, description="maximum epochs of this phase (0 skips it)")
    lr: float = Field(1e-4, gt=0.0, description="learning rate (the peak when a schedule warms up or decays)")
    optimizer: Literal["rmsprop", "adamw", "sgd"] = Field(
        "rmsprop", description="rmsprop: Keras semantics (trainer rho, epsilon); adamw; sgd with momentum"
    )
    weight_decay: float | None = Field(
        None,
        ge=0.0,
        description="adamw: decoupled decay (unset: 0.01); sgd: L2 added to the gradient (unset: 0); "
        "rmsprop has none (the head's l2 regularises)",
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd momentum")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum")
    schedule: Literal["constant", "step", "cosine"] = Field(
        "constant", description="learning rate per epoch after the warm-up: constant, step decay, cosine"
    )
    warmup_epochs: int = Field(
        0, ge=0, description="first epochs rising linearly from lr/10 to lr (0: no warm-up)"
    )
    step_size: int = Field(10, ge=1, description="step schedule: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step schedule: factor of each decay")
    min_lr: float = Field(0.0, ge=0.0, description="cosine schedule: the learning rate it decays to")
    patience: int = Field(
        5, ge=1, description="early stopping: epochs without val-loss improvement before stopping"
    )
    min_delta: float = Field(
        0.0, ge=0.0, description="early stopping: smallest val-loss decrease that counts"
    )
    restore_best: bool = Field(
        True, description="evaluate (and fine-tune from) the best-val-loss epoch instead of the last one"
    )

    @model_validator(mode="after")
    def _fits_the_optimizer(self) -> PhaseOptions:
        if self.optimizer == "rmsprop" and self.weight_decay:
            raise ValueError(
                "weight_decay needs optimizer = 'adamw' or 'sgd' (rmsprop has none; the head's l2 "
                "regularises)"
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer = 'sgd' and momentum > 0")
        if self.schedule == "cosine" and self.min_lr >= self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be below lr ({self.lr}) for a cosine schedule")
        return self


class FinetuneOptions(PhaseOptions):
    """Phase 2: the same callbacks, a smaller step and the backbone's last layers unfrozen."""

    lr: float = Field(1e-5, gt=0.0, description="learning rate (the peak when a schedule warms up or decays)")
    unfreeze_last: int = Field(
        150, ge=0, description="backbone layers to unfreeze, counted from the end of its layer list"
    )
    finetune_batchnorm: bool = Field(
        True, description="unfrozen BatchNorm layers update their moving statistics (Keras trainable=True)"
    )


PER_PHASE = ("optimizer", "lr", "epochs", "schedule", "weight_decay", "momentum", "warmup_epochs")


class TwoPhaseOptions(Options):
    # `--set trainer.optimizer=adamw` would be a bare "unknown key": say where per-phase settings live
    removed_options: ClassVar[Mapping[str, str]] = {
        key: f"{key} is set per phase: trainer.initial.{key} and trainer.finetuned.{key}" for key in PER_PHASE
    }

    initial: PhaseOptions = Field(
        default_factory=PhaseOptions, description="phase 1: frozen backbone, train the head"
    )
    finetuned: FinetuneOptions = Field(
        default_factory=FinetuneOptions, description="phase 2: fine-tune the backbone's last layers"
    )
    from_scratch: bool = Field(
        False,
        description="phase 1 trains every backbone layer, BatchNorm in training mode (no feature cache): "
        "for a backbone without pretrained weights",
    )
    class_weights: Literal["none", "balanced"] | dict[str, float] = Field(
        "none",
        description="training-loss weight per class: none; balanced (n / (classes * n_class) on the train "
        "split); or {class = weight}",
    )
    batch_size: int = Field(
        32,
        json_schema_extra={"minimum": 2},  # checked below, with a message that says why
        description="images per training step (Keras fit default 32; at least 2 for BatchNorm)",
    )
    eval_batch_size: int | None = Field(
        None, ge=1, description="images per validation step (and cache-building step); unset: batch_size"
    )
    rho: float = Field(0.9, gt=0.0, lt=1.0, description="RMSprop decay of the squared-gradient average")
    epsilon: float = Field(1e-7, gt=0.0, description="RMSprop epsilon")
    epsilon_inside_sqrt: bool = Field(
        True, description="Keras RMSprop divides by sqrt(v + eps); false: torch's sqrt(v) + eps"
    )
    num_workers: int | None = Field(
        None, ge=0, description="data loader worker processes; unset: what the dataset recommends"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA and CPUs that run bf16 natively, else fp32"
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="NHWC memory format for the model and its inputs; auto: where it is faster (CUDA, "
        "CPUs with AVX-512)",
    )
    compile: bool = Field(
        False, description="torch.compile the training forward (minutes of compiling first, faster steps)"
    )
    fold_batchnorm: bool = Field(
        True,
        description="fold each frozen inference-mode BatchNorm into the convolution before it (exact up "
        "to float rounding; the saved weights stay unfolded)",
    )
    feature_cache: Literal["auto", "off"] = Field(
        "auto",
        description="auto: without augmentation, phase 1 computes the frozen backbone's features once",
    )
    augmentation_bank: Literal["off", "auto"] | int = Field(
        "off",
        description="phase 1 with augmentation: precompute the frozen backbone's features of this many "
        "augmented views per training image, one drawn per image and epoch; auto: 8 views when "
        "initial.epochs >= 24; off: augment every epoch",
    )
    prefix_cache: Literal["auto", "memory", "disk", "off"] = Field(
        "auto",
        description="phase 2 without augmentation: run the frozen part of the backbone (whole segments "
        "before the first unfrozen layer) once and train on its stored activations; auto: in memory up "
        "to a quarter of RAM, else a file in RUN/cache/ deleted after the phase; off: every step runs "
        "the whole backbone",
    )
    prefix_cache_dtype: Literal["auto", "bf16"] = Field(
        "auto",
        description="auto: store what the prefix computes (fp32, or bf16 under bf16 training: exact); "
        "bf16: half the size in an fp32 run, at bf16 rounding of the activations",
    )
    prefix_bank: Literal["off"] | int = Field(
        "off",
        description="phase 2 with augmentation: store the frozen prefix's activations of this many "
        "augmented views per training image once (where and how prefix_cache stores them) and train "
        "each epoch on one view per image, drawn from the epoch's seed; off: augment and run the prefix "
        "every step",
    )
    activation_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="phase 2: keep only each trainable backbone segment's input and recompute the rest "
        "in the backward (less memory, one more forward of the suffix); auto: on when the estimated step "
        "peak exceeds memory_limit_gb",
    )
    memory_limit_gb: float | None = Field(
        None, gt=0.0, description="memory (GB, 10^9 bytes) phase 2 should stay under; unset: no limit"
    )
    progress: bool = Field(True, description="rich progress bar per epoch (only on a terminal)")
    tensorboard: bool = Field(True, description="write TensorBoard events when tensorboard is installed")

    @field_validator("augmentation_bank", "prefix_bank", mode="before")
    @classmethod
    def _views(cls, value: object) -> object:
        # true would silently mean 1 view; --set passes "8" as text, which the int branch then reads
        if isinstance(value, bool):
            raise ValueError("give a number of views per image, 'auto' or 'off'")
        return value

    @field_validator("augmentation_bank", "prefix_bank")
    @classmethod
    def _positive_views(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("a bank needs at least 1 view per image ('off' turns it off)")
        return value

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, dict) and any(weight <= 0 for weight in value.values()):
            raise ValueError("class weights must be positive numbers, one per class name")
        return value

    @field_validator("batch_size")
    @classmethod
    def _two_per_batch(cls, value: int) -> int:
        # else training dies in the first step ("Expected more than 1 value per channel")
        if value < 2:
            raise ValueError("at least 2 images per batch are needed: BatchNorm cannot train on one sample")
        return value
