"""Options of the ResNetV2 backbones (no torch import: the schema must stay cheap to load)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe import Options, RecipePath

Precision = Literal["fp32", "auto", "bf16", "fp16"]


class ResNetV2Options(Options):
    weights: Literal["imagenet", "none"] | RecipePath = Field(
        "imagenet",
        description="'imagenet' (Keras's published no-top file, downloaded once), 'none' (random, "
        "Keras's initialisers) or a file: Keras .h5 / .weights.h5 / .keras or a torch state dict",
    )
    cache_dir: RecipePath | None = Field(
        None,
        description="folder for downloaded weights; default $CTFRAME_WEIGHTS_DIR or ~/.cache/ctframe/weights",
    )
    channels_last: bool = Field(True, description="run convolutions in NHWC memory format (usually faster)")
    precision: Precision = Field(
        "fp32",
        description="'fp32' (Keras's numbers), 'auto' (bf16 autocast on CPUs with native bf16 and on CUDA "
        "that has it, else fp32), or force 'bf16' / 'fp16' autocast",
    )
    compile: bool = Field(False, description="torch.compile the backbone (slow first batch, faster after)")
