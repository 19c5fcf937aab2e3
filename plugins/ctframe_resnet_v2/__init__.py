"""ctframe built-in plugin: ResNet50V2 / ResNet101V2 / ResNet152V2 computing what Keras computes.

Importing this package stays cheap (no torch): the model code loads when a factory runs.
"""

from __future__ import annotations

from ctframe import hookimpl

from .factory import checker_for, factory_for
from .options import ResNetV2Options

DESCRIPTIONS = {
    "resnet50v2": "ResNet50V2 as in keras.applications (layer list, weights, numerics); 2048 features",
    "resnet101v2": "ResNet101V2 as in keras.applications (layer list, weights, numerics); 2048 features",
    "resnet152v2": "ResNet152V2 as in keras.applications (layer list, weights, numerics); 2048 features",
}


@hookimpl
def ctframe_register_backbones(register) -> None:
    for arch, description in DESCRIPTIONS.items():
        register(arch, factory_for(arch), ResNetV2Options, description, check=checker_for(arch))


@hookimpl
def ctframe_register_commands(cli) -> None:
    """``ctframe import-keras``: a whole Keras classifier -> whole-classifier safetensors."""
    from .cli import add_commands

    add_commands(cli)
