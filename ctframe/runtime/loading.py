"""Rebuild the classifier a model file describes: components from the registry, weights from safetensors."""

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
from ctframe.storage.modelfile import ModelFileError, ModelInfo, read_model_info


@dataclass(frozen=True)
class LoadedModel:
    info: ModelInfo
    classifier: Classifier


def _build(registry: Registry, kind: Kind, record: Mapping[str, Any], where: Path, *args: Any) -> Any:
    name = record.get("component")
    component = registry.get(kind, str(name))
    if component is None:
        plugin = record.get("plugin", "?")
        raise PluginError(
            f"{where}: the model needs {kind} {name!r} from plugin {plugin!r}, which is not installed "
            "(ctframe list-plugins shows what is)"
        )
    # an option the component has since moved elsewhere (removed_options) no longer shapes the model
    removed = getattr(component.options, "removed_options", {})
    stored = {key: value for key, value in dict(record.get("options", {})).items() if key not in removed}
    try:
        options = component.options.model_validate(stored)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        at = ".".join(str(p) for p in first["loc"]) or "(options)"
        raise ModelFileError(
            f"{where}: the stored {kind} options no longer fit {kind} {name!r} ({at}: {first['msg']}); "
            "install the plugin version that wrote the model"
        ) from None
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
    info = read_model_info(path)
    classes = info.class_names
    backbone = _build(registry, Kind.BACKBONE, info.metadata["backbone"], info.path)
    head = _build(registry, Kind.HEAD, info.metadata["head"], info.path, backbone.out_features, len(classes))
    classifier = Classifier(backbone, head, classes)
    try:
        state = load_file(str(info.weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{info.weights_path}: not a safetensors file ({first_line(error)})") from None
    _load_state(classifier, state, info.path)
    return LoadedModel(info, classifier.to(device).eval())
