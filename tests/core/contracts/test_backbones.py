"""Every registered backbone: tiny forward/backward, the layer-list contract and the optional segments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ctframe import Backbone, Kind
from ctframe.api.training import freeze_inactive_batchnorm, set_trainable_layers
from tests.core.contracts.components import build, names

# Variants of one component worth checking too (torchvision builds many architectures); every other
# backbone runs once, from its defaults (weights "none": offline).
VARIANTS = {
    "torchvision": [
        {"arch": "resnet18"},
        {"arch": "densenet121"},
        {"arch": "efficientnet_b0"},
        {"arch": "mobilenet_v3_small"},
    ],
}


def _cases() -> list:
    cases = []
    for param in names(Kind.BACKBONE):
        (name,) = param.values
        for options in VARIANTS.get(name, [{}]):
            cases.append(pytest.param(name, options, id="-".join([name, *map(str, options.values())])))
    return cases


def _build(name: str, options: dict, tmp_path: Path) -> nn.Module:
    return build(Kind.BACKBONE, name, tmp_path, **options)


@pytest.mark.parametrize(("name", "options"), _cases())
def test_backbone_forward_backward_and_layers(name: str, options: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = _build(name, options, tmp_path)
    assert isinstance(backbone, Backbone)

    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    backbone.train()
    features = backbone(images)
    assert features.dtype == torch.float32
    assert features.shape[:2] == (2, backbone.out_features) and features.ndim == 4
    assert torch.isfinite(features).all()
    features.mean().backward()
    parameters = list(backbone.parameters())
    assert all(p.grad is not None for p in parameters if p.requires_grad)
    assert any(p.grad.abs().sum() > 0 for p in parameters)

    backbone.eval()
    maps: list[torch.Tensor] = []
    layer = getattr(backbone, "cam_layer", None)  # optional: what explainers hook
    if layer is not None:
        assert any(module is layer for module in backbone.modules()), "cam_layer is a module inside it"
        layer.register_forward_hook(lambda _module, _inputs, output: maps.append(output))
    with torch.no_grad():  # uint8 and float 0..255 input mean the same
        assert torch.allclose(backbone(images), backbone(images.float()), atol=1e-5)
    assert all(m.ndim == 4 and m.shape[0] == 2 for m in maps), "cam_layer gives (N, C, h, w) maps"

    layers = list(backbone.layers)
    names = [layer.name for layer in layers]
    assert len(names) == len(set(names)), "layer names must be unique"
    # Every parameter belongs to exactly one listed layer, so "unfreeze the last N" reaches all of them.
    owners = [id(p) for layer in layers if layer.module is not None for p in layer.module.parameters()]
    assert sorted(owners) == sorted(id(p) for p in parameters)

    last = 10
    trainable = set_trainable_layers(backbone, last)
    assert trainable == layers[-last:]
    expected = {id(p) for layer in layers[-last:] if layer.module for p in layer.module.parameters()}
    assert {id(p) for p in parameters if p.requires_grad} == expected
    backbone.train()
    freeze_inactive_batchnorm(backbone)
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert module.training == any(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize(("name", "options"), _cases())
def test_backbone_segments_chain_to_forward(name: str, options: dict, tmp_path: Path) -> None:
    """``segments()`` (optional): composed in order they are ``forward``, and each owns exactly the
    parameters of its layers, so a frozen prefix of whole segments is one of frozen layers."""
    torch.manual_seed(0)
    backbone = _build(name, options, tmp_path)
    segments = list(getattr(backbone, "segments", list)())
    if not segments:
        pytest.skip(f"{name} {options} offers no segments (optional)")
    starts = [segment.start for segment in segments]
    assert starts[0] == 0 and starts == sorted(set(starts)), starts

    layers = list(backbone.layers)
    bounds = [*starts, len(layers)]
    for segment, start, stop in zip(segments, bounds, bounds[1:], strict=False):
        owned = {id(p) for p in segment.module.parameters()}
        listed = {id(p) for layer in layers[start:stop] if layer.module for p in layer.module.parameters()}
        assert owned == listed, f"segment at layer {start} ({layers[start].name})"

    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    backbone.eval()
    with torch.no_grad():
        x = images
        for segment in segments:
            x = segment.module(x)
        expected = backbone(images)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, expected, rtol=0, atol=0)  # the same operations in the same order
