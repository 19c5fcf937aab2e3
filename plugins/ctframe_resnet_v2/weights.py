"""Load weights into a :class:`~ctframe_resnet_v2.model.ResNetV2` from Keras files or torch state dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctframe import WeightsError
from ctframe.api.training import load_fitting_state, read_state_dict

from .keras_files import KerasFileError, KerasWeights, read_keras_weights, write_legacy_h5
from .model import ResNetV2

TORCH_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def keras_variables(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A Conv2d's or BatchNorm2d's tensors, named and ordered as Keras does (kernel, bias; gamma, ...)."""
    if isinstance(module, nn.Conv2d):
        pairs = [("kernel", module.weight)]
        if module.bias is not None:
            pairs.append(("bias", module.bias))
        return pairs
    if isinstance(module, nn.BatchNorm2d):
        return [
            ("gamma", module.weight),
            ("beta", module.bias),
            ("moving_mean", module.running_mean),
            ("moving_variance", module.running_var),
        ]
    raise TypeError(f"no Keras mapping for {type(module).__name__}")


def _to_torch_layout(name: str, array: np.ndarray) -> np.ndarray:
    # Keras kernels are (kh, kw, in, out); torch wants (out, in, kh, kw).
    return array.transpose(3, 2, 0, 1) if name == "kernel" and array.ndim == 4 else array


def keras_layer_order(model: ResNetV2) -> dict[str, list[str]]:
    """Layer names per Keras class key, for Keras 3 files whose variable groups carry no names."""
    weighted = [layer for layer in model.layers if layer.module is not None]
    return {
        "conv2d": [layer.name for layer in weighted if isinstance(layer.module, nn.Conv2d)],
        "batch_normalization": [layer.name for layer in weighted if isinstance(layer.module, nn.BatchNorm2d)],
    }


def copy_keras_weights(model: ResNetV2, stored: KerasWeights, source: Path) -> list[str]:
    """Copy Keras weights by layer name into ``model``, refusing at the first layer that does not fit.

    Returns the names of the layers it read; ``source`` only names the file in errors.
    """
    weighted = [layer for layer in model.layers if layer.module is not None]
    updates: list[tuple[torch.Tensor, np.ndarray]] = []
    for layer in weighted:
        variables = stored.get(layer.name)
        if variables is None:
            raise WeightsError(
                f"{source} has no weights for layer {layer.name!r}; is it a {model.arch} file?"
            )
        for name, tensor in keras_variables(layer.module):
            if name not in variables:
                raise WeightsError(f"{source}: layer {layer.name!r} lacks the variable {name!r}")
            array = _to_torch_layout(name, variables[name])
            if tuple(array.shape) != tuple(tensor.shape):
                raise WeightsError(
                    f"{source}: layer {layer.name!r} {name} has shape {tuple(variables[name].shape)} in the "
                    f"file but {model.arch} needs {_keras_shape(name, tensor)}; is it another architecture?"
                )
            updates.append((tensor, array))
    with torch.no_grad():
        for tensor, array in updates:
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
    return [layer.name for layer in weighted]


def load_keras_weights(model: ResNetV2, path: Path) -> list[str]:
    """Copy a Keras file's weights into ``model``; returns the file's layers with weights it did not use
    (a classifier's head, when the file is a whole model)."""
    try:
        stored: KerasWeights = read_keras_weights(path, keras_layer_order(model))
    except KerasFileError as error:
        raise WeightsError(f"cannot read Keras weights from {path}: {error}") from None
    used = set(copy_keras_weights(model, stored, path))
    return [name for name, variables in stored.items() if variables and name not in used]


def keras_weights_of(model: ResNetV2) -> KerasWeights:
    """The model's weights as Keras names and lays them out (kernels ``(kh, kw, in, out)``)."""
    weights: KerasWeights = {}
    for layer in model.layers:
        if layer.module is not None:
            weights[layer.name] = {
                name: _from_torch_layout(name, tensor.detach().cpu().float().numpy())
                for name, tensor in keras_variables(layer.module)
            }
    return weights


def save_keras_h5(model: ResNetV2, path: Path) -> Path:
    """Export to a legacy Keras ``.h5`` that ``keras.applications.<Arch>(weights=path)`` can load."""
    return write_legacy_h5(keras_weights_of(model), [layer.name for layer in model.layers], path)


def _from_torch_layout(name: str, array: np.ndarray) -> np.ndarray:
    if name == "kernel" and array.ndim == 4:
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    return array


def _keras_shape(name: str, tensor: torch.Tensor) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    return (shape[2], shape[3], shape[1], shape[0]) if name == "kernel" and len(shape) == 4 else shape


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The backbone's tensors and the keys left out: a Classifier's file (``backbone.*`` beside ``head.*``)
    gives its backbone part, and the rest is reported, not loaded."""
    state = read_state_dict(path, WeightsError)
    if any(key.startswith("backbone.") for key in state):  # saved from a whole Classifier
        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        # Named by module (head.hidden), as a layer list would name them, not tensor by tensor.
        others = {key.rpartition(".")[0] or key for key in state if not key.startswith("backbone.")}
        return backbone, sorted(others)
    return state, []


def load_torch_weights(model: ResNetV2, path: Path) -> list[str]:
    """Load a state dict saved from this model (or from a Classifier around it); returns the modules of
    a Classifier's file that are not the backbone's (``head.hidden``, ...)."""
    state, others = _read_state_dict(path)
    owners = {
        f"{module_name}.": layer.name
        for layer in model.layers
        if layer.module is not None
        for module_name, module in model.named_modules()
        if module is layer.module
    }

    def layer_of(key: str) -> str:
        owner = next((name for prefix, name in owners.items() if key.startswith(prefix)), None)
        return f"{key} (layer {owner})" if owner and not key.startswith(f"{owner}.") else key

    load_fitting_state(
        model,
        state,
        where=str(path),
        error_type=WeightsError,
        hint=f"use weights saved from a {model.arch} backbone or from a classifier around one",
        name=layer_of,
    )
    return others


def load_weights(model: ResNetV2, path: Path) -> list[str]:
    """Dispatch on the file: torch state dicts by suffix, anything else as a Keras file.

    Returns what the file holds beyond the backbone (Keras layer names or state-dict keys), not loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give an existing file, 'imagenet' or 'none'")
    if path.suffix in TORCH_SUFFIXES:
        return load_torch_weights(model, path)
    return load_keras_weights(model, path)
