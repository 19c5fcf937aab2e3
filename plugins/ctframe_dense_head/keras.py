"""Keras layers -> :class:`~ctframe_dense_head.head.DenseHead`: the study's head as Keras built it.

The Keras head is ``GlobalAveragePooling2D -> Dense(units, relu) -> BatchNormalization -> Dropout ->
Dense(outputs)``. This module knows those layers; reading Keras files is the backbone plugin's business,
so it takes plain layer records (anything with ``name``, ``class_name``, ``config`` and ``weights``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ctframe import DataError

POOLING = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}
BATCHNORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


class KerasLayer(Protocol):
    name: str
    class_name: str
    config: Mapping[str, Any] | None
    weights: Mapping[str, np.ndarray]


class KerasHeadError(DataError):
    """Keras head layers that do not fit the recipe's dense head."""


def _is_dense(layer: KerasLayer) -> bool:
    kernel = layer.weights.get("kernel")
    return layer.class_name == "Dense" or (kernel is not None and kernel.ndim == 2)


def _is_batchnorm(layer: KerasLayer) -> bool:
    return layer.class_name == "BatchNormalization" or "moving_mean" in layer.weights


def _activation(layer: KerasLayer) -> str | None:
    value = (layer.config or {}).get("activation")
    if isinstance(value, dict):  # a serialised activation object
        value = (value.get("config") or {}).get("name", value.get("class_name"))
    return None if value is None else str(value)


def _variable(layer: KerasLayer, name: str) -> np.ndarray:
    if name not in layer.weights:
        raise KerasHeadError(f"Keras layer {layer.name!r} has no {name!r}; the dense head needs it")
    return np.asarray(layer.weights[name], dtype=np.float32)


Update = tuple[torch.Tensor, np.ndarray]


def _dense(layer: KerasLayer, target: nn.Linear, what: str, fix: str) -> list[Update]:
    kernel = _variable(layer, "kernel")
    if kernel.shape != (target.in_features, target.out_features):
        if kernel.shape[0] != target.in_features:
            fix = f"its input is {kernel.shape[0]} wide, the layer before gives {target.in_features}"
        raise KerasHeadError(
            f"Keras {what} {layer.name!r} has kernel {kernel.shape}, the head expects "
            f"{(target.in_features, target.out_features)}; {fix}"
        )
    # Keras kernels are (in, out); torch's Linear weight is (out, in).
    return [(target.weight, kernel.T), (target.bias, _variable(layer, "bias"))]


def _check_config(head: Any, pooling: list[KerasLayer], hidden: KerasLayer, norm: KerasLayer | None,
                  output: KerasLayer) -> None:
    """Refuse Keras settings that would change what the head computes (training-only ones don't matter)."""
    options = head.options
    if pooling and POOLING.get(pooling[0].class_name) != options.pooling:
        raise KerasHeadError(
            f"the Keras model pools with {pooling[0].class_name} but head.pooling = {options.pooling!r}"
        )
    activation = _activation(hidden)
    if activation is not None and activation != options.activation:
        raise KerasHeadError(
            f"Keras layer {hidden.name!r} uses activation {activation!r}; "
            f"set head.activation = {activation!r}"
        )
    epsilon = (norm.config or {}).get("epsilon") if norm is not None else None
    if epsilon is not None and not np.isclose(float(epsilon), options.bn_epsilon, rtol=1e-6, atol=0.0):
        raise KerasHeadError(
            f"Keras layer {norm.name!r} has epsilon {epsilon}; set head.bn_epsilon = {epsilon}"
        )
    wanted = "sigmoid" if head.num_outputs == 1 else "softmax"
    activation = _activation(output)
    if activation not in (None, wanted, "linear"):  # linear: logits, which the head turns into probabilities
        raise KerasHeadError(
            f"Keras output layer {output.name!r} uses {activation!r}, the head's {head.num_outputs} "
            f"output(s) mean {wanted}"
        )


def load_keras_layers(head: Any, layers: Sequence[KerasLayer]) -> list[str]:
    """Copy the Keras head's weights into ``head`` (a DenseHead); returns the layer names it used.

    ``layers``: the Keras model's layers that are not the backbone's, in model order. The first Dense is
    the hidden layer, the last Dense the output and the first BatchNormalization the norm; any other
    weighted layer is left for the caller to report. Refuses, in one line, what does not fit.
    """
    weighted = [layer for layer in layers if layer.weights]
    dense = [layer for layer in weighted if _is_dense(layer)]
    if len(dense) < 2:
        raise KerasHeadError(
            f"the Keras model has {len(dense)} Dense layer(s) after the backbone; the dense head needs a "
            "hidden and an output Dense"
        )
    hidden, output = dense[0], dense[-1]
    # Any BatchNormalization, not only one between the two: weights-only Keras 3 files lose the order.
    norms = [layer for layer in weighted if _is_batchnorm(layer)]
    if head.options.batchnorm and not norms:
        raise KerasHeadError("the Keras head has no BatchNormalization; set head.batchnorm = false")
    if not head.options.batchnorm and norms:
        raise KerasHeadError(
            f"the Keras head has BatchNormalization {norms[0].name!r}; set head.batchnorm = true"
        )
    norm = norms[0] if norms else None
    units = _variable(hidden, "kernel").shape[-1]
    updates = _dense(hidden, head.hidden, "hidden layer", f"set head.units = {units}")
    outputs = _variable(output, "kernel").shape[-1]
    if outputs == 2 and head.num_outputs == 1:
        fix = 'set head.output = "softmax" (two softmax outputs)'
    elif outputs == 1 and head.num_outputs == 2:
        fix = 'set head.output = "auto" (one sigmoid output for two classes)'
    else:
        fix = f"give {max(outputs, 2)} class names (a single sigmoid output means 2)"
    updates += _dense(output, head.output, "output layer", fix)
    if norm is not None:
        statistics = [_variable(norm, name) for name in BATCHNORM_VARIABLES]
        if any(array.shape != (head.hidden.out_features,) for array in statistics):
            raise KerasHeadError(f"Keras layer {norm.name!r} is not {units} wide like {hidden.name!r}")
        module = head.norm
        targets = (module.weight, module.bias, module.running_mean, module.running_var)
        updates += list(zip(targets, statistics, strict=True))
    _check_config(head, [layer for layer in layers if layer.class_name in POOLING], hidden, norm, output)
    with torch.no_grad():
        for tensor, array in updates:
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return [layer.name for layer in (hidden, norm, output) if layer is not None]
