"""Parity with Keras itself: ResNet101V2 built by keras.applications in a separate process.

The Keras side runs in a subprocess (tensorflow and torch must not share a process). Its artifacts are
made once per session: random weights (BatchNorm statistics included) saved as legacy ``.h5``,
``.weights.h5`` and ``.keras``, random 224 px inputs with Keras's outputs, the layer names and the
trainable weights after unfreezing the last 150 layers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ctframe_resnet_v2.keras_subprocess import keras_available, run_keras_reference
from ctframe_resnet_v2.model import ARCHITECTURES, ResNetV2
from ctframe_resnet_v2.weights import keras_variables, load_weights, save_keras_h5

from ctframe.runtime.model import set_trainable_layers

pytestmark = [
    pytest.mark.keras,
    pytest.mark.skipif(not keras_available(), reason="needs tensorflow and keras: ctframe[keras]"),
]
ARCH = "resnet101v2"
MAX_RELATIVE_ERROR = 1e-4


@pytest.fixture(scope="session")
def keras_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("keras_resnet101v2")
    arguments = ["export", "--arch", ARCH, "--out", str(out), "--size", "224", "--batch", "2"]
    run_keras_reference(arguments, timeout=600, threads=1)
    return out


@pytest.fixture(scope="session")
def keras_facts(keras_export: Path) -> dict:
    return json.loads((keras_export / "describe.json").read_text())


def _torch_outputs(model: ResNetV2, images_nhwc: np.ndarray) -> np.ndarray:
    images = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous()
    model.eval()
    with torch.no_grad():
        return model(images).permute(0, 2, 3, 1).numpy()


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize(
    ("file_name", "channels_last"),
    [("resnet101v2.h5", False), ("resnet101v2.weights.h5", True), ("resnet101v2.keras", True)],
)
def test_outputs_match_keras_at_224px(keras_export: Path, file_name: str, channels_last: bool) -> None:
    reference = np.load(keras_export / "io.npz")
    model = ResNetV2(ARCH).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    load_weights(model, keras_export / file_name)
    outputs = _torch_outputs(model, reference["images"])
    assert outputs.shape == reference["outputs"].shape == (2, 7, 7, 2048)
    assert _relative_error(outputs, reference["outputs"]) <= MAX_RELATIVE_ERROR


def test_layer_list_and_parameter_count_are_keras(keras_facts: dict) -> None:
    model = ResNetV2(ARCH)
    assert [layer.name for layer in model.layers] == keras_facts["layers"]
    assert model.keras_param_count() == keras_facts["params"] == ARCHITECTURES[ARCH].keras_params


def test_unfreezing_last_150_trains_exactly_keras_weights(keras_facts: dict) -> None:
    model = ResNetV2(ARCH)
    set_trainable_layers(model, keras_facts["last"])
    trainable = {
        f"{layer.name}/{name}"
        for layer in model.layers
        if layer.module is not None
        for name, tensor in keras_variables(layer.module)
        if isinstance(tensor, torch.nn.Parameter) and tensor.requires_grad
    }
    assert trainable == set(keras_facts["trainable_after_last"])
    assert sum(p.requires_grad for p in model.parameters()) == len(keras_facts["trainable_after_last"])


def test_weights_exported_from_torch_give_keras_the_same_outputs(keras_export: Path, tmp_path: Path) -> None:
    model = ResNetV2(ARCH)
    load_weights(model, keras_export / "resnet101v2.weights.h5")
    with torch.no_grad():  # move away from the Keras file so a no-op export cannot pass
        model.post_bn.bias.add_(0.5)
    save_keras_h5(model, tmp_path / "from_torch.h5")
    run_keras_reference(
        ["predict", "--arch", ARCH, "--weights", str(tmp_path / "from_torch.h5"),
         "--inputs", str(keras_export / "io.npz"), "--out", str(tmp_path / "keras.npz")],
        timeout=600,
        threads=1,
    )
    keras_outputs = np.load(tmp_path / "keras.npz")["outputs"]
    torch_outputs = _torch_outputs(model, np.load(keras_export / "io.npz")["images"])
    assert _relative_error(torch_outputs, keras_outputs) <= MAX_RELATIVE_ERROR
