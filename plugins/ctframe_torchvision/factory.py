"""The ``torchvision`` backbone factory."""

from __future__ import annotations

from ctframe import BuildContext

from .options import TorchvisionOptions


def build_torchvision_backbone(options: TorchvisionOptions, context: BuildContext):
    """A torchvision trunk with the weights the options name, on the CPU."""
    from .model import TorchvisionBackbone
    from .weights import imagenet_file, load_weights

    backbone = TorchvisionBackbone(options.arch)
    if context.restoring:  # trained weights follow; reading pretrained ones would be wasted work
        pass
    elif options.weights == "imagenet":
        load_weights(backbone, imagenet_file(options.arch, options.cache_dir, logger=context.logger))
    elif options.weights != "none":
        load_weights(backbone, options.weights)
    if options.compile:
        backbone.compile()
    return backbone


def check_torchvision_weights(options: TorchvisionOptions, context: BuildContext) -> None:
    """Before a run directory exists: the ImageNet file is cached and intact (fetched now if not), or
    the named state dict file exists with a suffix the factory reads."""
    from .weights import TORCH_SUFFIXES, WeightsError, imagenet_file

    if options.weights == "imagenet":
        imagenet_file(options.arch, options.cache_dir, logger=context.logger)
    elif options.weights != "none":
        if not options.weights.is_file():
            raise WeightsError(f"weights file {options.weights} does not exist; fix backbone.weights")
        if options.weights.suffix not in TORCH_SUFFIXES:
            raise WeightsError(
                f"{options.weights}: torchvision weights must be a torch state dict "
                f"({', '.join(TORCH_SUFFIXES)}); fix backbone.weights"
            )
