"""The ``torchvision`` backbone factory."""

from __future__ import annotations

from ctframe import BuildContext

from .options import TorchvisionOptions


def build_torchvision_backbone(options: TorchvisionOptions, context: BuildContext):
    """A torchvision trunk with the weights the options name, on the CPU."""
    from .model import TorchvisionBackbone
    from .weights import imagenet_file, load_weights

    backbone = TorchvisionBackbone(
        options.arch, channels_last=options.channels_last, precision=options.precision
    )
    if options.weights == "imagenet":
        load_weights(backbone, imagenet_file(options.arch, options.cache_dir, logger=context.logger))
    elif options.weights != "none":
        load_weights(backbone, options.weights)
    if options.compile:
        backbone.compile()
    return backbone
