"""Load weights into a :class:`~ctframe_resnet_v2.model.ResNetV2` from Keras files or torch state dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctframe import DataError
from ctframe.rundir import read_state_dict

from .keras_files import KerasFileError, KerasWeights, read_keras_weights, write_legacy_h5
from .model import ResNetV2

TORCH_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


class WeightsError(DataError):
    """A weights file that is missing, unreadable or made for another model."""


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


def load_keras_weights(model: ResNetV2, path: Path) -> None:
    """Copy a Keras file's weights into ``model``, refusing at the first layer that does not fit."""
    weighted = [layer for layer in model.layers if layer.module is not None]
    order = {
        "conv2d": [layer.name for layer in weighted if isinstance(layer.module, nn.Conv2d)],
        "batch_normalization": [layer.name for layer in weighted if isinstance(layer.module, nn.BatchNorm2d)],
    }
    try:
        stored: KerasWeights = read_keras_weights(path, order)
    except KerasFileError as error:
        raise WeightsError(f"cannot read Keras weights from {path}: {error}") from None
    updates: list[tuple[torch.Tensor, np.ndarray]] = []
    for layer in weighted:
        variables = stored.get(layer.name)
        if variables is None:
            raise WeightsError(
                f"{path} has no weights for layer {layer.name!r}; is it a {model.arch} file without the top?"
            )
        for name, tensor in keras_variables(layer.module):
            if name not in variables:
                raise WeightsError(f"{path}: layer {layer.name!r} lacks the variable {name!r}")
            array = _to_torch_layout(name, variables[name])
            if tuple(array.shape) != tuple(tensor.shape):
                raise WeightsError(
                    f"{path}: layer {layer.name!r} {name} has shape {tuple(variables[name].shape)} in the "
                    f"file but {model.arch} needs {_keras_shape(name, tensor)}; is it another architecture?"
                )
            updates.append((tensor, array))
    with torch.no_grad():
        for tensor, array in updates:
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))


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


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = read_state_dict(path, WeightsError)
    if state and all(key.startswith("backbone.") for key in state):  # saved from a whole Classifier
        state = {key.removeprefix("backbone."): value for key, value in state.items()}
    return state


def load_torch_weights(model: ResNetV2, path: Path) -> None:
    """Load a state dict saved from this model (or from a Classifier around it)."""
    state = _read_state_dict(path)
    owners = {
        f"{module_name}.": layer.name
        for layer in model.layers
        if layer.module is not None
        for module_name, module in model.named_modules()
        if module is layer.module
    }
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            continue  # older files lack the counter; BatchNorm's loader fills it in
        owner = next((name for prefix, name in owners.items() if key.startswith(prefix)), key)
        if key not in state:
            raise WeightsError(f"{path} has no {key!r} (layer {owner!r}); is it a {model.arch} state dict?")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{path}: layer {owner!r} ({key}) has shape {tuple(state[key].shape)}, "
                f"{model.arch} needs {tuple(tensor.shape)}"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise WeightsError(f"{path} holds tensors {model.arch} does not have, first {unexpected[0]!r}")
    model.load_state_dict(state)


def load_weights(model: ResNetV2, path: Path) -> None:
    """Dispatch on the file: torch state dicts by suffix, anything else as a Keras file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give an existing file, 'imagenet' or 'none'")
    if path.suffix in TORCH_SUFFIXES:
        load_torch_weights(model, path)
    else:
        load_keras_weights(model, path)
