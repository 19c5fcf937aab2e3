"""Options of the mil trainer (no torch import: listing plugins and validating recipes stay fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe import Options

POOLINGS = ("noisy_or", "topk_mean", "max", "mean", "lse")


class MilOptions(Options):
    """The head learns on bags of frozen-backbone features: one bag per group, one label per bag."""

    pooling: Literal["noisy_or", "topk_mean", "max", "mean", "lse"] = Field(
        "topk_mean",
        description="how a bag's probability comes from its images': noisy_or, topk_mean (mean of the k "
        "highest), max, mean, lse (log-sum-exp, a smooth max with `temperature`); set [evaluation] "
        "aggregate to match (docs/mil.md)",
    )
    k: int = Field(
        5, ge=1, description="pooling = 'topk_mean': images per bag averaged (all in smaller bags)"
    )
    temperature: float = Field(
        5.0, gt=0.0, le=100.0, description="pooling = 'lse': near 0 it is the mean, large it is the max"
    )
    epochs: int = Field(50, ge=1, description="maximum passes over the training bags")
    warmup_epochs: int = Field(
        2,
        ge=0,
        description="first epochs train with mean pooling (every image gets a gradient): max and topk_mean "
        "train only the images they pick, and a head that starts out ranking the signal images low can "
        "stay stuck; validation always pools as `pooling` says",
    )
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate of the head")
    bags_per_step: int = Field(8, ge=1, description="bags (groups) per optimiser step")
    patience: int = Field(
        10, ge=1, description="early stopping: epochs without validation bag-loss improvement"
    )
    min_delta: float = Field(
        0.0, ge=0.0, description="early stopping: smallest bag-loss decrease that counts"
    )
    restore_best: bool = Field(True, description="return the epoch with the lowest validation bag loss")
    recalibrate_batchnorm: bool = Field(
        True,
        description="after every epoch, recompute the head's BatchNorm statistics over all training images "
        "(a few bag steps per epoch leave Keras-style moving averages far from the data)",
    )
    batch_size: int = Field(64, ge=1, description="images per backbone pass while computing the features")
    num_workers: int | None = Field(
        None, ge=0, description="data loader worker processes; unset: what the dataset recommends"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="of the frozen-backbone feature pass; the head trains in fp32"
    )
    top_images: int = Field(
        5,
        ge=1,
        description="images listed per validation group in mil_top_images.csv (largest pooling weight)",
    )
