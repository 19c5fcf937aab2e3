"""Read Keras weight files with h5py alone (no tensorflow): ``{layer name: {variable name: array}}``.

Three layouts:

* legacy ``.h5`` (Keras 2's ``save_weights``, Keras's published application weights, and ``model.save`` to
  ``.h5``, which nests the same layout under ``model_weights``): one group per layer, the attribute
  ``weight_names`` lists ``<layer>/<variable>[:0]`` paths. Weights of a nested model (a base model inside
  a classifier) sit in the nested model's group under the same paths, so parsing the paths finds them;
* Keras 3 ``.weights.h5``: ``layers/<key>/vars/0..n`` where ``<key>`` is the class name with a counter
  (``conv2d_7``) and ``vars`` carries the layer name as the attribute ``name``;
* Keras 3 ``.keras``: a zip archive holding ``model.weights.h5`` in the layout above.

Whole models (legacy ``.h5`` from ``model.save``, ``.keras``) also carry the model's configuration;
:func:`read_keras_layers` uses it to list every layer, parameter-free ones included, in model order.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KerasWeights = dict[str, dict[str, np.ndarray]]

# Keras's variable order per layer type; Keras 3 .weights.h5 stores variables by these positions.
VARIABLES = {
    "conv2d": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}


# A .keras archive is checked before anything is inflated. Keras writes three members (metadata.json,
# config.json, model.weights.h5; a ResNet101V2 is ~170 MB): the caps leave room for the largest Keras
# applications and refuse what only a zip bomb does.
ARCHIVE_LIMIT = 4 * 2**30
"""Most all members may inflate to: ConvNeXtXLarge, the largest Keras application, is ~1.4 GB of weights."""
RATIO_LIMIT = 200
"""Most a member may inflate per compressed byte: float32 weights compress ~1.1x and JSON ~10-20x."""
RATIO_FLOOR = 2**20
"""Members up to this size may compress better (a tiny metadata.json): they cannot hurt."""
MEMBER_LIMIT = 1000
READ_CHUNK = 2**20


class KerasFileError(ValueError):
    """A file that is not a Keras weight file this reader understands."""


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count < 2**30 else f"{count / 2**30:.2f} GiB"


def _check_members(archive: zipfile.ZipFile) -> None:
    """Refuse, from the declared sizes alone, an archive that would inflate beyond the caps."""
    members = archive.infolist()
    if len(members) > MEMBER_LIMIT:
        raise KerasFileError(
            f"the archive holds {len(members)} members (a .keras holds a few, at most {MEMBER_LIMIT})"
        )
    total = sum(member.file_size for member in members)
    if total > ARCHIVE_LIMIT:
        raise KerasFileError(
            f"the archive declares {_size(total)} inflated, over the {_size(ARCHIVE_LIMIT)} limit"
        )
    for member in members:
        if member.file_size > RATIO_FLOOR and member.file_size > RATIO_LIMIT * max(member.compress_size, 1):
            inflated = _size(member.file_size)
            raise KerasFileError(
                f"member {member.filename} inflates {member.compress_size} bytes to {inflated} "
                f"(over {RATIO_LIMIT}x): a zip bomb, not a model"
            )


def check_archive(path: Path) -> None:
    """Raise :class:`KerasFileError` when ``path`` is a zip archive over the size caps; other files pass."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive)
    except zipfile.BadZipFile as error:
        raise KerasFileError(f"a damaged .keras archive ({error})") from None


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """One member, inflated in chunks and never past its declared size (checked by :func:`_check_members`)."""
    member = archive.getinfo(name)
    buffer = io.BytesIO()
    with archive.open(member) as handle:
        while chunk := handle.read(READ_CHUNK):
            if buffer.tell() + len(chunk) > member.file_size:
                raise KerasFileError(f"member {name} inflates past its declared {member.file_size} bytes")
            buffer.write(chunk)
    return buffer.getvalue()


def _attribute_list(group, name: str) -> list[str]:
    """A string-list attribute; Keras splits long ones into ``name0``, ``name1``, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_legacy(root) -> KerasWeights:
    weights: KerasWeights = {}
    for layer_name in _attribute_list(root, "layer_names"):
        group = root[layer_name]
        for weight_name in _attribute_list(group, "weight_names"):
            parts = weight_name.split(":")[0].split("/")
            owner = parts[-2] if len(parts) >= 2 else layer_name
            weights.setdefault(owner, {})[parts[-1]] = np.asarray(group[weight_name])
    return weights


def _split_key(key: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", key)
    assert match is not None
    return match.group(1), int(match.group(2) or 0)


def _read_keras3(root, layer_order: dict[str, Sequence[str]]) -> KerasWeights:
    """``layer_order`` maps a Keras class key (``conv2d``) to layer names in model order, used only
    when a file predates Keras's ``name`` attribute on ``vars``."""
    weights: KerasWeights = {}
    layers = root["layers"]
    for key in sorted(layers, key=_split_key):
        if "layers" in layers[key]:  # a nested model, e.g. the base inside a classifier
            weights.update(_read_keras3(layers[key], layer_order))
        variables = layers[key].get("vars")
        if variables is None or len(variables) == 0:
            continue
        kind, index = _split_key(key)
        name = variables.attrs.get("name")
        if isinstance(name, bytes):
            name = name.decode("utf8")
        if not name:
            names = layer_order.get(kind, ())
            # Beyond the model's own layers (a classifier's head) the group key is the best name there is.
            name = names[index] if index < len(names) else key
        labels = VARIABLES.get(kind, ())
        arrays = [np.asarray(variables[str(i)]) for i in range(len(variables))]
        weights[name] = {(labels[i] if i < len(labels) else str(i)): array for i, array in enumerate(arrays)}
    return weights


def read_keras_weights(path: Path, layer_order: dict[str, Sequence[str]] | None = None) -> KerasWeights:
    """Weights by layer name from a legacy ``.h5``, a Keras 3 ``.weights.h5`` or a ``.keras`` archive."""
    import h5py

    layer_order = layer_order or {}
    path = Path(path)
    if zipfile.is_zipfile(path):
        source: Path | io.BytesIO = io.BytesIO(_archive_member(path, "model.weights.h5"))
    else:
        source = path
    try:
        handle = h5py.File(source, "r")
    except OSError as error:
        raise KerasFileError(f"not an HDF5 file ({str(error).splitlines()[0]})") from None
    with handle:
        if "layer_names" in handle.attrs or "layer_names0" in handle.attrs:
            return _read_legacy(handle)
        if "model_weights" in handle:
            return _read_legacy(handle["model_weights"])
        if "layers" in handle:
            return _read_keras3(handle, layer_order)
    raise KerasFileError("no Keras weights layout found (expected 'layer_names' or 'layers')")


def _archive_member(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive)
            if member not in archive.namelist():
                raise KerasFileError(f"the archive has no {member} (is it a Keras 3 .keras file?)")
            return _read_member(archive, member)
    except zipfile.BadZipFile as error:
        raise KerasFileError(f"a damaged .keras archive ({error})") from None


@dataclass(frozen=True)
class KerasLayer:
    """One entry of a Keras model's layer list, nested models flattened into it."""

    name: str
    class_name: str
    """Keras's class (``Dense``); guessed from the variables when the file has no model configuration."""
    config: Mapping[str, Any] | None = None
    """The layer's Keras configuration (activation, epsilon, ...); ``None`` in weights-only files."""
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)


def read_keras_config(path: Path) -> dict[str, Any] | None:
    """The model configuration of a whole-model file, ``None`` for a weights-only file."""
    import h5py

    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                _check_members(archive)
                text: Any = (
                    _read_member(archive, "config.json") if "config.json" in archive.namelist() else None
                )
        else:
            with h5py.File(path, "r") as handle:
                text = handle.attrs.get("model_config")
        if text is None:
            return None
        config = json.loads(text.decode("utf8") if isinstance(text, bytes) else text)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise KerasFileError(f"unreadable model configuration ({str(error).splitlines()[0]})") from None
    return config if isinstance(config, dict) and isinstance(config.get("config"), dict) else None


def _flatten_config(model: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(class name, layer name, layer config)`` in model order, with nested models' layers inlined."""
    entries = []
    for entry in model.get("config", {}).get("layers") or ():
        config = entry.get("config") or {}
        if isinstance(config.get("layers"), list):  # a nested model (the base inside a Sequential)
            entries.extend(_flatten_config(entry))
        else:
            entries.append((str(entry.get("class_name")), str(config.get("name", entry.get("name"))), config))
    return entries


def _guess_class(variables: Mapping[str, np.ndarray]) -> str:
    if "moving_mean" in variables:
        return "BatchNormalization"
    kernel = variables.get("kernel")
    if kernel is not None:
        return {2: "Dense", 4: "Conv2D"}.get(kernel.ndim, "unknown")
    return "unknown"


def read_keras_layers(path: Path, layer_order: dict[str, Sequence[str]] | None = None) -> list[KerasLayer]:
    """Every layer of a Keras file in model order, with its weights and, for whole models, its config.

    A weights-only file lists only layers that hold weights, in the file's order.
    """
    weights = read_keras_weights(path, layer_order)
    config = read_keras_config(path)
    if config is None:
        return [KerasLayer(name, _guess_class(values), None, values) for name, values in weights.items()]
    layers = [
        KerasLayer(name, class_name, config, weights.get(name, {}))
        for class_name, name, config in _flatten_config(config)
    ]
    listed = {layer.name for layer in layers}
    # Weights the configuration does not account for still belong in the list: someone must say so.
    layers += [KerasLayer(n, _guess_class(v), None, v) for n, v in weights.items() if n not in listed]
    return layers


def write_legacy_h5(weights: KerasWeights, layer_names: Sequence[str], path: Path) -> Path:
    """Write Keras's legacy weights layout (what ``model.load_weights("x.h5")`` reads), atomically.

    ``layer_names`` lists every layer in model order, parameter-free ones included, as Keras does.
    """
    import h5py

    from ctframe.api import write_bytes

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.attrs["layer_names"] = [name.encode("utf8") for name in layer_names]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"3"
        for name in layer_names:
            group = handle.create_group(name)
            variables = weights.get(name, {})
            group.attrs["weight_names"] = [f"{name}/{variable}".encode() for variable in variables]
            for variable, array in variables.items():
                group.create_dataset(f"{name}/{variable}", data=array)
    return write_bytes(Path(path), buffer.getvalue())
