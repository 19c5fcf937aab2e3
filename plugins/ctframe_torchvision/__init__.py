"""ctframe built-in plugin: torchvision classification trunks (ResNet, DenseNet, EfficientNet, ...).

Importing this package stays cheap (no torch): the model code loads when the factory runs.
"""

from __future__ import annotations

from ctframe import hookimpl

from .factory import build_torchvision_backbone, check_torchvision_weights
from .options import TorchvisionOptions


@hookimpl
def ctframe_register_backbones(register) -> None:
    register(
        "torchvision",
        build_torchvision_backbone,
        TorchvisionOptions,
        "a torchvision model's convolutional trunk by name (arch=resnet50, densenet121, "
        "efficientnet_b0, ...); ImageNet mean/std input normalisation",
        check=check_torchvision_weights,
    )
