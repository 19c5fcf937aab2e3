"""Options of the torchvision backbone (no torch import: the schema must stay cheap to load)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe import Options, RecipePath
from ctframe.api import CHANNELS_LAST_MOVED, PRECISION_MOVED

# Architectures whose torchvision trunk ends in a spatial feature map a pooling head can use.
FAMILIES: dict[str, str] = {
    **{name: "resnet" for name in (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
        "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    )},
    **{name: "densenet" for name in ("densenet121", "densenet161", "densenet169", "densenet201")},
    **{name: "features" for name in (
        *(f"efficientnet_b{i}" for i in range(8)), "efficientnet_v2_s", "efficientnet_v2_m",
        "efficientnet_v2_l", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
        "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "vgg11", "vgg13", "vgg16", "vgg19",
    )},
    **{name: "regnet" for name in (
        "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf",
        "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
    )},
}
Architecture = Literal[tuple(FAMILIES)]  # type: ignore[valid-type]


class TorchvisionOptions(Options):
    removed_options = {"precision": PRECISION_MOVED, "channels_last": CHANNELS_LAST_MOVED}

    arch: Architecture = Field("resnet50", description="torchvision classification model whose trunk to use")
    weights: Literal["imagenet", "none"] | RecipePath = Field(
        "imagenet",
        description="'imagenet' (torchvision's default weights for arch, downloaded once), 'none' (random) "
        "or a torch state dict file (.safetensors / .pt / .pth) of the torchvision model or of this backbone",
    )
    cache_dir: RecipePath | None = Field(
        None, description="folder for downloaded weights; default torch hub's checkpoints folder"
    )
    compile: bool = Field(False, description="torch.compile the backbone (slow first batch, faster after)")
