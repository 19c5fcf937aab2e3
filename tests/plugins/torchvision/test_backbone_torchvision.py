"""The torchvision backbone computes torchvision's trunk and loads its state dicts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from ctframe_torchvision.model import IMAGENET_MEAN, IMAGENET_STD, TorchvisionBackbone
from ctframe_torchvision.weights import WeightsError, load_weights
from safetensors.torch import save_file
from torchvision import models

from ctframe import CtframeError


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 64, 64), generator=generator, dtype=torch.uint8)


def _normalised(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def _error(backbone: TorchvisionBackbone, path: Path) -> str:
    with pytest.raises(WeightsError) as caught:
        load_weights(backbone, path)
    assert isinstance(caught.value, CtframeError) and "\n" not in str(caught.value)
    return str(caught.value)


def test_resnet18_state_dict_gives_torchvision_features(images: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = models.resnet18(weights=None).eval()
    save_file(reference.state_dict(), tmp_path / "resnet18.safetensors")  # with its fc: dropped on load
    backbone = TorchvisionBackbone("resnet18").to(memory_format=torch.channels_last).eval()
    load_weights(backbone, tmp_path / "resnet18.safetensors")
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(_normalised(images)))))
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(x))))
        torch.testing.assert_close(backbone(images), expected, rtol=1e-4, atol=1e-4)
        # and the logits torchvision computes, through global average pooling and the original fc
        logits = reference.fc(backbone(images).mean(dim=(2, 3)))
        torch.testing.assert_close(logits, reference(_normalised(images)), rtol=1e-4, atol=1e-4)


def test_layers_follow_forward_order(images: torch.Tensor) -> None:
    backbone = TorchvisionBackbone("resnet18")
    names = [layer.name for layer in backbone.layers]
    assert names[:2] == ["conv1", "bn1"] and names[-2:] == ["layer4.1.conv2", "layer4.1.bn2"]
    # downsample runs inside the block: listed before the next block, not at the end
    assert names.index("layer2.0.downsample.0") < names.index("layer2.1.conv1")
    assert "fc" not in names and all(layer.module is not None for layer in backbone.layers)


def test_densenet_files_with_old_key_names_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = models.densenet121(weights=None)
    old_style = {
        re.sub(r"(denselayer\d+\.)(norm|relu|conv)([12])\.", r"\1\2.\3.", key): value
        for key, value in reference.state_dict().items()
        if not key.endswith("num_batches_tracked")  # files of that age predate the counter
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    torch.save(old_style, tmp_path / "densenet121-old.pth")
    backbone = TorchvisionBackbone("densenet121")
    load_weights(backbone, tmp_path / "densenet121-old.pth")
    torch.testing.assert_close(
        backbone.model.features.denseblock1.denselayer1.norm1.weight,
        reference.features.denseblock1.denselayer1.norm1.weight,
    )


def test_state_dicts_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    torch.save(models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    backbone = TorchvisionBackbone("resnet18")
    message = _error(backbone, tmp_path / "resnet34.pth")
    assert "tensors the model does not have (first: 'layer1.2." in message
    assert message.endswith("use a resnet18 state dict (torchvision's, or saved by ctframe)")
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    message = _error(TorchvisionBackbone("resnet34"), tmp_path / "resnet18.pth")
    assert "(first: 'layer1.2.conv1.weight')" in message
    assert "does not exist" in _error(backbone, tmp_path / "absent.pth")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    assert "must be a torch state dict" in _error(backbone, tmp_path / "weights.h5")
