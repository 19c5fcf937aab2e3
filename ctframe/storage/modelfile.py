"""The core's model file: ``<key>.safetensors`` (weights) beside ``<key>.json`` (what they are).

The JSON names everything needed to rebuild the classifier and to use it as training did: the
backbone and head components with their options, the classes, the positive class and the
threshold chosen on validation, the group rule (``group_rule``: how image probabilities become one per
patient or series, and that level's threshold; absent in files written before it), the recalibration
(``calibration``) and conformal rule (``conformal``) fitted on validation (absent: none), how images were
read (the dataset component and its options, the input shape), versions and the run it came from, and
an ``integrity`` block: a digest of all the other fields, the weights' sha256 included, signed when a
signing key is set (:mod:`ctframe.storage.model_seal`). Every read checks each field
(:mod:`ctframe.storage.model_fields`), the digest, the run's ``integrity.json`` when the file sits in a run
directory, and the weights' sha256; ``load_model`` then rebuilds the classifier from the plugins and
loads the weights with safetensors (no pickle).

This module reads and writes the files; :mod:`ctframe.runtime.loading` rebuilds the classifier.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.base.version import __version__
from ctframe.storage import integrity
from ctframe.storage.files import first_line, sha256_file, write_bytes, write_json
from ctframe.storage.layout import MODEL_INDEX, MODEL_INFO, MODEL_WEIGHTS, MODELS
from ctframe.storage.model_fields import ModelFileError, check_fields
from ctframe.storage.model_seal import LEGACY_VERSION, check_seal, seal
from ctframe.storage.signing import signing_key

if TYPE_CHECKING:
    from torch import nn

FORMAT = "ctframe-model"
FORMAT_VERSION = 2
"""2: with the ``integrity`` block; files of version 1 are still read (:mod:`ctframe.storage.model_seal`)."""
logger = logging.getLogger("ctframe")
_warned: set[tuple[str, str]] = set()  # a warning about one file is said once per process, not per read


@dataclass(frozen=True)
class ModelInfo:
    """The JSON half of a model file, as a typed object."""

    path: Path
    """The ``.json`` file."""
    metadata: Mapping[str, Any]
    unverified: str | None = None
    """Why the file was accepted without verifying its digest (older file, signed but no key), or None."""

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
    def calibration(self) -> Mapping[str, Any]:
        """The recalibration fitted on validation (``method``: none, temperature, platt, and its
        parameters); ``{"method": "none"}`` in files written without one."""
        return dict(self.metadata.get("calibration") or {"method": "none"})

    @property
    def conformal(self) -> Mapping[str, Any] | None:
        """The conformal rule (``alpha``, ``method``, ``quantiles`` per class name), or ``None``."""
        value = self.metadata.get("conformal")
        return None if value is None else dict(value)

    @property
    def weights_path(self) -> Path:
        return self.path.parent / str(self.metadata["weights"]["file"])

    @property
    def reading(self) -> Mapping[str, Any]:
        """How images were read: ``dataset`` component, its ``options``, the ``input`` shape."""
        return self.metadata["input"]


def _component_record(config: Any) -> dict[str, Any]:
    return {
        "component": config.component.name,
        "plugin": config.component.plugin,
        "options": config.options.model_dump(mode="json"),
    }


def save_model(
    run_path: Path,
    key: str,
    classifier: nn.Module,
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``models/<key>.safetensors`` and then ``models/<key>.json`` in ``run_path`` (atomically, in
    that order, so a JSON file always describes complete weights). Returns the JSON path."""

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in classifier.state_dict().items()}
    MODELS.path(run_path).mkdir(parents=True, exist_ok=True)
    weights = MODEL_WEIGHTS.path(run_path, key)
    from safetensors.torch import save  # torch loads only when weights are written

    write_bytes(weights, save(state))
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "key": key,
        **metadata,
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "tensors": len(state)},
    }
    return write_json(MODEL_INFO.path(run_path, key), seal(record, signing_key()))


def reseal_model_file(path: Path) -> Path:
    """Write ``path``'s integrity block anew (signed when a signing key is set), after a deliberate edit by
    whoever holds the key; every field must still be valid. The weights' sha256 is recomputed too."""
    info = _read_info(path)
    record = dict(info.metadata)
    record["weights"] = {**record["weights"], "sha256": sha256_file(info.weights_path)}
    record["format_version"] = FORMAT_VERSION
    return write_json(info.path, seal(record, signing_key()))


def model_metadata(
    recipe: Any,
    data: Any,
    title: str,
    threshold: Any,
    run: Mapping[str, Any],
    group_rule: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    conformal: Mapping[str, Any] | None = None,
    validation_rates: Mapping[str, Any] | None = None,
) -> dict:
    """The JSON fields that come from the run: components, classes, threshold, group rule (aggregation,
    group threshold, unit: how the model answers per patient), recalibration and conformal rule (both
    fitted on validation; absent: none), image reading."""

    sample_shape = list(data.train[0][0].shape) if len(data.train) else None
    return {
        "title": title,
        "backbone": _component_record(recipe.backbone),
        "head": _component_record(recipe.head),
        "class_names": list(data.class_names),
        "positive_class": data.positive_class,
        "threshold": threshold.value,
        "threshold_choice": threshold.as_dict(),
        **({} if group_rule is None else {"group_rule": dict(group_rule)}),
        **({} if calibration is None else {"calibration": dict(calibration)}),
        **({} if conformal is None else {"conformal": dict(conformal)}),
        **({} if validation_rates is None else {"validation_rates": dict(validation_rates)}),
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
        raise ModelFileError(f"{path}: model file not found; a run keeps them in RUN/{MODELS.display}")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = first_line(error)
        raise ModelFileError(f"{path}: not a ctframe model file (unreadable JSON: {reason})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f'{path}: not a ctframe model file (no "format": "{FORMAT}")')
    version = metadata.get("format_version")
    if isinstance(version, bool) or version not in (LEGACY_VERSION, FORMAT_VERSION):
        raise ModelFileError(
            f"{path}: field format_version is {version!r}; this ctframe reads {LEGACY_VERSION} and "
            f"{FORMAT_VERSION}: use the ctframe version that wrote it"
        )
    check_fields(path, metadata)
    return ModelInfo(path, metadata)


def read_model_info(path: Path, verify: bool = True, warn: bool = True) -> ModelInfo:
    """The metadata of a model file, every field checked, and its integrity block against the fields
    (signed with the signing key when one is set); ``verify`` also checks it against the run's
    ``integrity.json`` (when in a run directory) and the weights file's sha256. ``warn``: log
    ``unverified`` now (else the caller calls :func:`warn_unverified` once it has used the file)."""
    info = _read_info(path)
    warning = check_seal(info.path, info.metadata, signing_key())
    info = ModelInfo(info.path, info.metadata, warning)
    if verify:
        problem = integrity.check_recorded(info.path)
        if problem:
            raise ModelFileError(problem)
        weights = info.weights_path
        if not weights.is_file():
            raise ModelFileError(f"{info.path}: its weights file {weights} is missing")
        if sha256_file(weights) != info.metadata["weights"].get("sha256"):
            raise ModelFileError(
                f"{weights}: sha256 differs from the one recorded in {info.path.name}; the weights were "
                "changed after the run wrote them: refusing to load them"
            )
    if warn:
        warn_unverified(info)
    return info


def warn_unverified(info: ModelInfo) -> None:
    """Log why ``info``'s file was accepted unverified, once per file and process."""
    said = (str(info.path.absolute()), info.unverified)
    if info.unverified and said not in _warned:
        _warned.add(said)
        logger.warning("%s", info.unverified)


def models_of_run(run_path: Path) -> list[Path]:
    """The model JSON files of a run, in the order the trainer returned them."""
    folder = MODELS.path(run_path)
    index = MODEL_INDEX.path(run_path)
    if index.is_file():
        keys = json.loads(index.read_text(encoding="utf-8")).get("models", [])
        return [MODEL_INFO.path(run_path, key) for key in keys]
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def find_model(model_or_run: Path, key: str | None = None) -> Path:
    """A model JSON from a model path, or from a run directory (``key``, default the last model)."""
    path = Path(model_or_run)
    if not path.is_dir():
        return path
    models = models_of_run(path)
    if not models:
        raise ModelFileError(f"{path}: no models in {MODELS.display}; pass a completed run or a model .json")
    if key is None:
        return models[-1]
    for model in models:
        if model.stem == key:
            return model
    keys = ", ".join(m.stem for m in models)
    raise ModelFileError(f"{path}: no model {key!r}; this run has: {keys}")
