"""Backbone factories registered by the plugin: one per architecture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ctframe import BuildContext

from .options import ResNetV2Options


def build_resnet_v2(arch: str, options: ResNetV2Options, context: BuildContext):
    """A :class:`~ctframe_resnet_v2.model.ResNetV2` with the weights the options name, on the CPU."""
    from .download import fetch_imagenet_weights
    from .model import ResNetV2
    from .weights import load_weights

    model = ResNetV2(arch)
    if context.restoring:  # trained weights follow; reading pretrained ones would be wasted work
        pass
    elif options.weights == "imagenet":
        load_weights(model, fetch_imagenet_weights(arch, options.cache_dir, logger=context.logger))
    elif options.weights != "none":
        unused = load_weights(model, options.weights)
        if unused:
            context.logger.warning(not_loaded_warning(options.weights, unused))
    if options.compile:
        model.compile()
    return model


def not_loaded_warning(path: Path, unused: list[str]) -> str:
    """One line naming what a whole-classifier file holds beyond the backbone, and how to load all of it."""
    from .weights import TORCH_SUFFIXES

    names = ", ".join(unused[:8]) + (f", ... ({len(unused) - 8} more)" if len(unused) > 8 else "")
    if Path(path).suffix in TORCH_SUFFIXES:
        how = f'[run] weights = "{path}"'
    else:
        how = f"ctframe import-keras {path} --recipe RECIPE -o classifier.safetensors, then [run] weights"
    return (
        f"backbone.weights {path}: only the backbone was loaded; not loaded: {names}. "
        f"To start from the whole classifier: {how}"
    )


def check_weights(arch: str, options: ResNetV2Options, context: BuildContext) -> None:
    """Before a run starts: the ImageNet file is cached (fetched now if not), or the named file exists."""
    from .download import fetch_imagenet_weights
    from .weights import WeightsError

    if options.weights == "imagenet":
        fetch_imagenet_weights(arch, options.cache_dir, logger=context.logger)
    elif options.weights != "none" and not options.weights.is_file():
        raise WeightsError(f"weights file {options.weights} does not exist; fix backbone.weights")


def checker_for(arch: str) -> Callable[[ResNetV2Options, BuildContext], None]:
    def check(options: ResNetV2Options, context: BuildContext) -> None:
        check_weights(arch, options, context)

    return check


def factory_for(arch: str) -> Callable[[ResNetV2Options, BuildContext], object]:
    def factory(options: ResNetV2Options, context: BuildContext):
        return build_resnet_v2(arch, options, context)

    factory.__name__ = f"build_{arch}"
    factory.__doc__ = f"{arch} backbone (Keras-faithful), see build_resnet_v2."
    return factory
