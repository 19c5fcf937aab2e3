"""Every registered backbone: tiny forward/backward and the layer-list contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ctframe import BuildContext, Kind
from ctframe.base.contracts import Backbone
from ctframe.registry.plugins import build_registry
from ctframe.runtime.model import freeze_inactive_batchnorm, set_trainable_layers

PLUGINS = "resnet_v2,torchvision"
# Options that keep each case small and offline; torchvision is one component with many architectures.
CASES = {
    "resnet50v2": [{}],
    "resnet101v2": [{}],
    "resnet152v2": [{}],
    "torchvision": [
        {"arch": "resnet18"},
        {"arch": "densenet121"},
        {"arch": "efficientnet_b0"},
        {"arch": "mobilenet_v3_small"},
    ],
}


def _cases() -> list:
    registry = build_registry(selection=PLUGINS)
    names = registry.names(Kind.BACKBONE)
    assert set(names) == set(CASES), f"add new backbones to CASES: {sorted(set(names) ^ set(CASES))}"
    return [
        pytest.param(name, options, id=f"{name}-{options.get('arch', 'default')}")
        for name in names
        for options in CASES[name]
    ]


def _build(name: str, options: dict, tmp_path: Path) -> nn.Module:
    component = build_registry(selection=PLUGINS).get(Kind.BACKBONE, name)
    values = {"weights": "none", **options}
    validated = component.options.model_validate(values, context={"base_dir": tmp_path})
    context = BuildContext(seed=0, device="cpu", recipe_dir=tmp_path)
    return component.factory(validated, context)


@pytest.mark.parametrize(("name", "options"), _cases())
def test_backbone_forward_backward_and_layers(name: str, options: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
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
    with torch.no_grad():  # uint8 and float 0..255 input mean the same
        assert torch.allclose(backbone(images), backbone(images.float()), atol=1e-5)

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
def test_backbone_segments_chain_to_forward(name: str, options: dict, tmp_path: Path, monkeypatch) -> None:
    """``segments()`` (optional): composed in order they are ``forward``, and each owns exactly the
    parameters of its layers, so a frozen prefix of whole segments is one of frozen layers."""
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
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
