"""Options of the ResNetV2 backbones (no torch import: the schema must stay cheap to load)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe import Options, RecipePath
from ctframe.api import CHANNELS_LAST_MOVED, PRECISION_MOVED


class ResNetV2Options(Options):
    removed_options = {"precision": PRECISION_MOVED, "channels_last": CHANNELS_LAST_MOVED}

    weights: Literal["imagenet", "none"] | RecipePath = Field(
        "imagenet",
        description="'imagenet' (Keras's published no-top file, downloaded once), 'none' (random, "
        "Keras's initialisers) or a file: Keras .h5 / .weights.h5 / .keras or a torch state dict",
    )
    cache_dir: RecipePath | None = Field(
        None,
        description="folder for downloaded weights; default $CTFRAME_WEIGHTS_DIR or ~/.cache/ctframe/weights",
    )
    compile: bool = Field(False, description="torch.compile the backbone (slow first batch, faster after)")
