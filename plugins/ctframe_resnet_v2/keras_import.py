"""A whole Keras classifier (a ResNetV2 base with a head on top) -> a ctframe Classifier state dict.

The backbone's layers are this plugin's business; the head's belong to the head component, which takes
them through its ``load_keras_layers(layers)`` method (the dense head has one). The result is a
safetensors file with the ``backbone.*`` and ``head.*`` keys of the ``Classifier``, which
``[run] weights`` loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ctframe import DataError
from ctframe.api.recipes import Recipe


class KerasImportError(DataError):
    """A Keras file, a recipe or class names that cannot make one classifier."""


@dataclass(frozen=True)
class ImportSummary:
    output: Path
    class_names: tuple[str, ...]
    backbone_layers: int
    head_layers: tuple[str, ...]
    unused: tuple[str, ...]
    """Layers of the file that hold weights and were not loaded."""


def recipe_class_names(recipe: Recipe) -> tuple[str, ...]:
    """The class names a recipe's dataset section lists (``classes``), in label order."""
    classes = getattr(recipe.dataset.options, "classes", None)
    if not classes:
        raise KerasImportError(
            f"{recipe.path}: dataset {recipe.dataset.component.name!r} lists no classes in the recipe; "
            "give --classes A,B in the Keras model's label order"
        )
    return tuple(str(name) for name in classes)


def import_keras_classifier(
    source: Path, recipe: Recipe, output: Path, class_names: Sequence[str] | None = None
) -> ImportSummary:
    """Build the classifier ``recipe`` describes, fill it from the Keras file, write it to ``output``."""
    from safetensors.torch import save

    from ctframe.api import write_bytes
    from ctframe.api.recipes import build_model, make_context

    from .keras_files import KerasFileError, check_archive, read_keras_layers
    from .model import ResNetV2
    from .weights import copy_keras_weights, keras_layer_order

    source, output = Path(source), Path(output)
    if not source.is_file():
        raise KerasImportError(f"{source} does not exist; give a Keras .h5 (model.save) or .keras file")
    if output.suffix != ".safetensors":
        raise KerasImportError(f"--output {output}: name a .safetensors file (what [run] weights reads)")
    try:  # a hostile archive is refused before a model is built
        check_archive(source)
    except KerasFileError as error:
        raise KerasImportError(f"cannot read Keras weights from {source}: {error}") from None
    names = tuple(class_names) if class_names else recipe_class_names(recipe)
    if len(names) < 2 or len(set(names)) != len(names):
        raise KerasImportError(f"class names must be at least two distinct names, got {list(names)}")
    # restoring: the recipe's pretrained backbone weights would be overwritten at once, so skip them.
    context = replace(make_context(recipe, run_dir=None), restoring=True)
    model = build_model(recipe, context, names)
    if not isinstance(model.backbone, ResNetV2):
        raise KerasImportError(
            f"{recipe.path}: backbone {recipe.backbone.component.name!r} is not a ResNetV2; import-keras "
            "maps Keras's ResNet50V2/101V2/152V2"
        )
    load_head = getattr(model.head, "load_keras_layers", None)
    if load_head is None:
        raise KerasImportError(
            f"{recipe.path}: head {recipe.head.component.name!r} cannot take Keras weights "
            "(it has no load_keras_layers); use the dense head"
        )
    try:
        layers = read_keras_layers(source, keras_layer_order(model.backbone))
    except KerasFileError as error:
        raise KerasImportError(f"cannot read Keras weights from {source}: {error}") from None
    stored = {layer.name: dict(layer.weights) for layer in layers if layer.weights}
    backbone_used = copy_keras_weights(model.backbone, stored, source)
    backbone_names = {layer.name for layer in model.backbone.layers}
    # Weights that a whole model's configuration does not list are reported, never taken for the head.
    listed = any(layer.config is not None for layer in layers)
    candidates = [
        layer
        for layer in layers
        if layer.name not in backbone_names and (layer.config is not None or not listed)
    ]
    head_used = tuple(load_head(candidates))
    used = set(backbone_used) | set(head_used)
    unused = tuple(layer.name for layer in layers if layer.weights and layer.name not in used)
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    write_bytes(output, save(state, metadata={"source": source.name, "classes": ",".join(names)}))
    return ImportSummary(output, names, len(backbone_used), head_used, unused)
