"""A torchvision classification model's trunk as a ctframe backbone.

The wrapped model keeps torchvision's module names (``model.layer1.0.conv1``), with its classifier
removed, so torchvision state dicts load with at most a prefix change.

Layer list contract: one :class:`ctframe.Layer` per *leaf module that holds parameters or buffers*, in
the order a forward pass first calls them, named by its torchvision path (``layer4.2.bn3``).
Parameter-free modules (activations, pooling) are left out: for these models "unfreeze the last N layers"
then counts units that can learn, which is the meaning torchvision users expect.
"""

from __future__ import annotations

import torch
from torch import nn

from ctframe import Layer, Segment

from .options import FAMILIES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_ATTRIBUTES = ("fc", "classifier", "avgpool")
PROBE_SIZE = 64


def _resnet_stem(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def _trunk_forward(family: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if family == "resnet":
        return model.layer4(model.layer3(model.layer2(model.layer1(_resnet_stem(model, x)))))
    if family == "densenet":
        return model.features(x)  # torchvision's ReLU after features is the backbone's final_relu
    if family == "regnet":
        return model.trunk_output(model.stem(x))
    return model.features(x)


class TorchvisionBackbone(nn.Module):
    """RGB ``0..255`` (uint8 or float, NCHW) -> the trunk's last feature map ``(N, out_features, h, w)``."""

    def __init__(self, arch: str):
        super().__init__()
        from torchvision import models

        if arch not in FAMILIES:
            raise ValueError(f"unsupported torchvision architecture {arch!r}; choose from {sorted(FAMILIES)}")
        self.arch = arch
        self.family = FAMILIES[arch]
        self.model = models.get_model(arch, weights=None)
        for attribute in HEAD_ATTRIBUTES:  # the ctframe head pools and classifies
            if hasattr(self.model, attribute):
                setattr(self.model, attribute, nn.Identity())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        # torchvision applies DenseNet's last ReLU functionally; a module lets explanations hook its output
        self.final_relu = nn.ReLU() if self.family == "densenet" else nn.Identity()
        self._layer_paths, self.out_features = self._probe()

    def _probe(self) -> tuple[list[str], int]:
        """Run a small input once: the order in which learnable leaf modules are called, and the width."""
        paths = {module: path for path, module in self.model.named_modules()}
        order: list[str] = []

        def record(module: nn.Module, _inputs: object, _output: object) -> None:
            path = paths[module]
            if path not in order:
                order.append(path)

        leaves = [module for module in self.model.modules() if _is_learnable_leaf(module)]
        handles = [module.register_forward_hook(record) for module in leaves]
        was_training = self.training
        try:
            self.eval()
            with torch.no_grad():
                features = _trunk_forward(self.family, self.model, torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
        finally:
            for handle in handles:
                handle.remove()
            self.train(was_training)
        return order, int(features.shape[1])

    @property
    def layers(self) -> list[Layer]:
        modules = dict(self.model.named_modules())
        return [Layer(path, modules[path]) for path in self._layer_paths]

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is the trunk's last feature map (what the head pools): explanations
        look at it. ResNet: ``layer4``; DenseNet: the ReLU after ``features``; RegNet: ``trunk_output``;
        EfficientNet, MobileNet, VGG: ``features``."""
        if self.family == "resnet":
            return self.model.layer4
        if self.family == "densenet":
            return self.final_relu
        if self.family == "regnet":
            return self.model.trunk_output
        return self.model.features

    def segments(self) -> list[Segment]:
        """ResNet family: the stem, then each residual block (cuts where a trainer may cache a frozen
        prefix's activations, ``ctframe.Segment``). Other families offer no cuts: an empty list."""
        if self.family != "resnet":
            return []
        starts = {path: index for index, path in enumerate(self._layer_paths)}
        blocks = [(f"layer{stage}.{i}", block) for stage in range(1, 5)
                  for i, block in enumerate(getattr(self.model, f"layer{stage}"))]
        chain = [Segment(0, _ResNetStem(self))]
        chain += [Segment(starts[f"{path}.conv1"], block) for path, block in blocks[:-1]]
        last_path, last_block = blocks[-1]
        return [*chain, Segment(starts[f"{last_path}.conv1"], _FloatOutput(last_block))]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(torch.float32) - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # no memory-format conversion here: the caller converts the uint8 batch once (ctframe's performance)
        return self.final_relu(_trunk_forward(self.family, self.model, self.normalise(images))).float()


class _ResNetStem(nn.Module):
    """First link of a ResNet trunk's chain: ImageNet normalisation, conv1, bn1, ReLU, max-pool."""

    def __init__(self, backbone: TorchvisionBackbone):
        super().__init__()
        self.model_stem = nn.ModuleDict(
            {name: getattr(backbone.model, name) for name in ("conv1", "bn1", "relu", "maxpool")}
        )
        self._normalise = backbone.normalise  # a plain attribute: the backbone is not this module's child

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _resnet_stem(self.model_stem, self._normalise(images))  # ModuleDict: attribute access


class _FloatOutput(nn.Module):
    """The last block, returning float32 features as the backbone's ``forward`` does."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x).float()


def _is_learnable_leaf(module: nn.Module) -> bool:
    """A module without children that owns parameters or buffers (conv, BN, linear, ...)."""
    if next(module.children(), None) is not None:
        return False
    owns_tensors = next(module.parameters(recurse=False), None) is not None
    return owns_tensors or next(module.buffers(recurse=False), None) is not None
