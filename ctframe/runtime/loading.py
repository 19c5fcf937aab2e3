"""Rebuild the classifier a model file describes: components from the registry, weights from safetensors.

:func:`ctframe.storage.modelfile.read_model_info` checks the file's fields and integrity; here the stored
component options are checked against the installed plugins, the dataset's too (predict and explain read
images with them), each mismatch one line naming the field (``input.dataset.options.image_size``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file

from ctframe.base.contracts import BuildContext, Kind
from ctframe.base.errors import PluginError
from ctframe.registry.plugins import Registry, get_registry
from ctframe.runtime.model import Classifier
from ctframe.storage.checkpoints import check_state_fits
from ctframe.storage.files import first_line
from ctframe.storage.modelfile import ModelFileError, ModelInfo, read_model_info, warn_unverified


@dataclass(frozen=True)
class LoadedModel:
    info: ModelInfo
    classifier: Classifier


def _stored_options(component: Any, record: Mapping[str, Any], where: Path, field: str) -> Any:
    """The component's options from the model file, or one line naming the first field that does not fit."""
    # an option the component has since moved elsewhere (removed_options) no longer shapes the model
    removed = getattr(component.options, "removed_options", {})
    stored = {key: value for key, value in dict(record.get("options", {})).items() if key not in removed}
    try:
        return component.options.model_validate(stored)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        at = ".".join(str(p) for p in first["loc"])
        raise ModelFileError(
            f"{where}: field {field}.options{'.' + at if at else ''} does not fit {component.kind} "
            f"{component.name!r} ({first['msg']}); the model file was edited, or install the plugin version "
            "that wrote it"
        ) from None


def check_reading(registry: Registry, info: ModelInfo) -> None:
    """The stored dataset options, checked as the reader will take them (when the dataset is installed)."""
    record = info.reading["dataset"]
    component = registry.get(Kind.DATASET, str(record.get("component")))
    if component is not None:
        _stored_options(component, record, info.path, "input.dataset")


def _build(
    registry: Registry, kind: Kind, record: Mapping[str, Any], where: Path, field: str, *args: Any
) -> Any:
    name = record.get("component")
    component = registry.get(kind, str(name))
    if component is None:
        plugin = record.get("plugin", "?")
        raise PluginError(
            f"{where}: the model needs {kind} {name!r} from plugin {plugin!r}, which is not installed "
            "(ctframe list-plugins shows what is)"
        )
    options = _stored_options(component, record, where, field)
    context = BuildContext(seed=0, device="cpu", recipe_dir=where.parent, restoring=True)
    return component.factory(options, context, *args)


def _load_state(classifier: Classifier, state: Mapping[str, Any], where: Path) -> None:
    check_state_fits(
        classifier.state_dict(),
        state,
        where=f"{where}: the weights",
        error_type=ModelFileError,
        hint="the plugin's model changed since it was written",
    )
    classifier.load_state_dict(dict(state), strict=True)


def load_model(path: Path, registry: Registry | None = None, device: str = "cpu") -> LoadedModel:
    """Rebuild the classifier a model file describes and load its weights (safetensors, no pickle)."""
    registry = get_registry() if registry is None else registry
    info = read_model_info(path, warn=False)  # said once the model is built: one line if it is not
    classes = info.class_names
    metadata = info.metadata
    backbone = _build(registry, Kind.BACKBONE, metadata["backbone"], info.path, "backbone")
    width = backbone.out_features
    head = _build(registry, Kind.HEAD, metadata["head"], info.path, "head", width, len(classes))
    check_reading(registry, info)
    classifier = Classifier(backbone, head, classes)
    try:
        state = load_file(str(info.weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{info.weights_path}: not a safetensors file ({first_line(error)})") from None
    _load_state(classifier, state, info.path)
    warn_unverified(info)
    return LoadedModel(info, classifier.to(device).eval())
