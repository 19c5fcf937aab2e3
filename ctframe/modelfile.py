"""The core's model file: ``<key>.safetensors`` (weights) beside ``<key>.json`` (what they are).

The JSON names everything needed to rebuild the classifier and to use it as training did: the
backbone and head components with their options, the classes, the positive class and the
threshold chosen on validation, how images were read (the dataset component and its options, the
input shape), versions and the run it came from. ``load_model`` rebuilds the classifier from the
plugins and loads the weights with safetensors (no pickle), after checking their sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ctframe.contracts import BuildContext, Kind
from ctframe.errors import CtframeError, PluginError
from ctframe.rundir import first_line, write_bytes, write_json

if TYPE_CHECKING:
    import torch

    from ctframe.model import Classifier
    from ctframe.plugins import Registry

FORMAT = "ctframe-model"
FORMAT_VERSION = 1
MODELS_DIR = "models"


class ModelFileError(CtframeError):
    """A model file that is missing, damaged, tampered with, or no longer fits the installed plugins."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """The JSON half of a model file, as a typed object."""

    path: Path
    """The ``.json`` file."""
    metadata: Mapping[str, Any]

    @property
    def key(self) -> str:
        return str(self.metadata["key"])

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", self.key))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.metadata["class_names"])

    @property
    def positive_class(self) -> str:
        return str(self.metadata["positive_class"])

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def threshold(self) -> float | None:
        value = self.metadata.get("threshold")
        return None if value is None else float(value)

    @property
    def weights_path(self) -> Path:
        return self.path.parent / str(self.metadata["weights"]["file"])

    @property
    def reading(self) -> Mapping[str, Any]:
        """How images were read: ``dataset`` component, its ``options``, the ``input`` shape."""
        return self.metadata["input"]


@dataclass(frozen=True)
class LoadedModel:
    info: ModelInfo
    classifier: Classifier


def _component_record(config: Any) -> dict[str, Any]:
    return {
        "component": config.component.name,
        "plugin": config.component.plugin,
        "options": config.options.model_dump(mode="json"),
    }


def save_model(
    folder: Path,
    key: str,
    classifier: Classifier,
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``folder/<key>.safetensors`` and then ``folder/<key>.json`` (atomically, in that order,
    so a JSON file always describes complete weights). Returns the JSON path."""
    from safetensors.torch import save

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in classifier.state_dict().items()}
    weights = Path(folder) / f"{key}.safetensors"
    write_bytes(weights, save(state))
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "key": key,
        **metadata,
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "tensors": len(state)},
    }
    return write_json(Path(folder) / f"{key}.json", record)


def model_metadata(recipe: Any, data: Any, title: str, threshold: Any, run: Mapping[str, Any]) -> dict:
    """The JSON fields that come from the run: components, classes, threshold, image reading."""
    from ctframe import __version__

    sample_shape = list(data.train[0][0].shape) if len(data.train) else None
    return {
        "title": title,
        "backbone": _component_record(recipe.backbone),
        "head": _component_record(recipe.head),
        "class_names": list(data.class_names),
        "positive_class": data.positive_class,
        "threshold": threshold.value,
        "threshold_choice": threshold.as_dict(),
        "input": {
            "dataset": _component_record(recipe.dataset),
            "shape": sample_shape,
            "dtype": "uint8",
            "channels": "RGB",
        },
        "versions": {"ctframe": __version__, **run.get("versions", {})},
        "run": {k: v for k, v in run.items() if k != "versions"},
    }


# ------------------------------------------------------------------------------------------ loading


def _read_info(path: Path) -> ModelInfo:
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: a folder; name a model's .json file (for a run, see ctframe predict)")
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found; a run keeps them in RUN/{MODELS_DIR}/")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = first_line(error)
        raise ModelFileError(f"{path}: not a ctframe model file (unreadable JSON: {reason})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f'{path}: not a ctframe model file (no "format": "{FORMAT}")')
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {metadata.get('format_version')!r}; this ctframe reads "
            f"{FORMAT_VERSION}: use the ctframe version that wrote it"
        )
    missing = [
        k
        for k in ("key", "backbone", "head", "class_names", "positive_class", "weights", "input")
        if k not in metadata
    ]
    if missing:
        raise ModelFileError(f"{path}: model file lacks {', '.join(missing)}; it was damaged or edited")
    return ModelInfo(path, metadata)


def read_model_info(path: Path, verify: bool = True) -> ModelInfo:
    """The metadata of a model file; ``verify`` also checks the weights file's sha256."""
    info = _read_info(path)
    if verify:
        weights = info.weights_path
        if not weights.is_file():
            raise ModelFileError(f"{info.path}: its weights file {weights} is missing")
        if sha256_file(weights) != info.metadata["weights"].get("sha256"):
            raise ModelFileError(
                f"{weights}: sha256 differs from the one recorded in {info.path.name}; the weights were "
                "changed after the run wrote them: refusing to load them"
            )
    return info


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


def _load_state(classifier: Classifier, state: Mapping[str, torch.Tensor], where: Path) -> None:
    own = classifier.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelFileError(
            f"{where}: the weights do not fit the rebuilt model ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors; {detail}); the plugin's model changed since"
        )
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelFileError(
                f"{where}: tensor {name!r} has shape {tuple(state[name].shape)}, the rebuilt model "
                f"expects {tuple(tensor.shape)}; the plugin's model changed since"
            )
    classifier.load_state_dict(dict(state), strict=True)


def load_model(path: Path, registry: Registry | None = None, device: str = "cpu") -> LoadedModel:
    """Rebuild the classifier a model file describes and load its weights (safetensors, no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ctframe.model import Classifier

    if registry is None:
        from ctframe.plugins import get_registry

        registry = get_registry()
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


def models_of_run(run_path: Path) -> list[Path]:
    """The model JSON files of a run, in the order the trainer returned them."""
    folder = Path(run_path) / MODELS_DIR
    index = folder / "index.json"
    if index.is_file():
        keys = json.loads(index.read_text(encoding="utf-8")).get("models", [])
        return [folder / f"{key}.json" for key in keys]
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def find_model(model_or_run: Path, key: str | None = None) -> Path:
    """A model JSON from a model path, or from a run directory (``key``, default the last model)."""
    path = Path(model_or_run)
    if not path.is_dir():
        return path
    models = models_of_run(path)
    if not models:
        raise ModelFileError(f"{path}: no models in {MODELS_DIR}/; pass a completed run or a model .json")
    if key is None:
        return models[-1]
    for model in models:
        if model.stem == key:
            return model
    keys = ", ".join(m.stem for m in models)
    raise ModelFileError(f"{path}: no model {key!r}; this run has: {keys}")
