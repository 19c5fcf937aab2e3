"""ResNetV2 (pre-activation ResNet) computing what ``keras.applications.ResNet*V2(include_top=False)`` does.

Differences from torchvision-style ResNets that matter for parity with Keras:

* the stride of a stack sits in its *last* block (3x3 conv), whose shortcut is a 1x1 max-pool, stride 2;
* block 1 of a stack has a 1x1 conv shortcut applied to the *pre-activated* input;
* convolutions have a bias except each block's 1x1 and 3x3 bottleneck convs (which feed a BatchNorm);
* the stem is conv 7x7/2 with bias, no BN or ReLU, then a 3x3/2 max-pool over *zero* padding;
* BatchNorm epsilon 1.001e-5, Keras momentum 0.99 (torch momentum 0.01).

The module has no memory-format or precision setting: whoever runs it (the trainer, the prediction loop)
moves it to NHWC and opens autocast. In inference mode ctframe's folding folds each block's ``bn1`` and
``bn2`` into ``conv1`` / ``conv2``; ``preact_bn`` and ``post_bn`` follow an addition and cannot fold.

``layers`` lists Keras's ``model.layers`` with the same names in the same order (Keras 3 naming: the input
is ``input_layer`` and the shortcut max-pools, which Keras leaves unnamed, are ``max_pooling2d``,
``max_pooling2d_1``, ``max_pooling2d_2``), so "the last N layers" means what ``base.layers[-N:]`` means.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ctframe import Layer, Segment

BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.01  # torch's momentum is 1 - Keras's 0.99
EXPANSION = 4


@dataclass(frozen=True)
class Architecture:
    blocks: tuple[int, int, int, int]
    """Blocks per stack conv2..conv5 (at least 2: the first and the last block differ)."""
    keras_params: int
    """Keras's ``count_params()`` without the top (weights plus BatchNorm moving statistics)."""
    filters: tuple[int, int, int, int] = (64, 128, 256, 512)
    """Bottleneck width per stack (Keras's; narrower ones make small models for tests)."""


ARCHITECTURES: dict[str, Architecture] = {
    "resnet50v2": Architecture((3, 4, 6, 3), 23_564_800),
    "resnet101v2": Architecture((3, 4, 23, 3), 42_626_560),
    "resnet152v2": Architecture((3, 8, 36, 3), 58_331_648),
}
STACK_STRIDES = (2, 2, 2, 1)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    # Keras pads explicitly with ZeroPadding2D and convolves "valid"; symmetric zero padding is the same.
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=bias)


class PreActBottleneck(nn.Module):
    """Keras's ``residual_block_v2``."""

    def __init__(self, in_channels: int, filters: int, stride: int, conv_shortcut: bool):
        super().__init__()
        out_channels = EXPANSION * filters
        self.stride = stride
        self.preact_bn = _batch_norm(in_channels)
        self.shortcut_conv = _conv(in_channels, out_channels, 1, stride) if conv_shortcut else None
        self.conv1 = _conv(in_channels, filters, 1, bias=False)
        self.bn1 = _batch_norm(filters)
        self.conv2 = _conv(filters, filters, 3, stride, bias=False)
        self.bn2 = _batch_norm(filters)
        self.conv3 = _conv(filters, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place ReLUs: each overwrites a fresh BatchNorm (or folded conv) output that nothing else
        # reads, saving an allocation per layer; autograd keeps what the backward needs.
        preact = F.relu(self.preact_bn(x), inplace=True)
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_conv(preact)
        elif self.stride > 1:
            # Keras's 1x1 max-pool with stride s is a strided view: no pooling kernel, no indices
            shortcut = x[:, :, :: self.stride, :: self.stride]
        else:
            shortcut = x
        out = F.relu(self.bn1(self.conv1(preact)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        return shortcut + self.conv3(out)

    def keras_layers(self, prefix: str, max_pool_name: str | None) -> Iterator[Layer]:
        """This block's entries of Keras's ``model.layers``, in Keras's (topological) order."""
        yield Layer(f"{prefix}_preact_bn", self.preact_bn)
        yield Layer(f"{prefix}_preact_relu")
        yield Layer(f"{prefix}_1_conv", self.conv1)
        yield Layer(f"{prefix}_1_bn", self.bn1)
        yield Layer(f"{prefix}_1_relu")
        yield Layer(f"{prefix}_2_pad")
        yield Layer(f"{prefix}_2_conv", self.conv2)
        yield Layer(f"{prefix}_2_bn", self.bn2)
        yield Layer(f"{prefix}_2_relu")
        # Both shortcut layers sit one step before the add, so Keras lists them next to 3_conv.
        if self.shortcut_conv is not None:
            yield Layer(f"{prefix}_0_conv", self.shortcut_conv)
        elif max_pool_name is not None:
            yield Layer(max_pool_name)
        yield Layer(f"{prefix}_3_conv", self.conv3)
        yield Layer(f"{prefix}_out")


def stem(conv1: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    x = conv1(x)
    # Keras's pool1_pad pads with zeros, and conv1's output can be negative: not a -inf padded pool.
    return F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=0.0), kernel_size=3, stride=2)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """RGB ``0..255`` to Keras's ``preprocess_input`` for ResNetV2 (``x / 127.5 - 1``)."""
    return images.to(torch.float32) / 127.5 - 1.0


class _InputSegment(nn.Module):
    """The chain's first link: normalisation and the stem (conv1, pool1)."""

    def __init__(self, backbone: ResNetV2):
        super().__init__()
        self.conv1_conv = backbone.conv1_conv

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return stem(self.conv1_conv, normalise(images))


class _OutputSegment(nn.Module):
    """The chain's last link: ``post_bn`` and ``post_relu``, returning float32 as ``forward`` does."""

    def __init__(self, backbone: ResNetV2):
        super().__init__()
        self.post_bn = backbone.post_bn
        self.post_relu = backbone.post_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_relu(self.post_bn(x)).float()


class ResNetV2(nn.Module):
    """Backbone: RGB ``0..255`` (uint8 or float, NCHW) -> ``post_relu`` features ``(N, 2048, h, w)``."""

    def __init__(self, arch: str = "resnet101v2"):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
        self.arch = arch
        self.conv1_conv = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        stacks = []
        in_channels = 64
        spec = ARCHITECTURES[arch]
        for filters, count, stride in zip(spec.filters, spec.blocks, STACK_STRIDES, strict=True):
            blocks = [
                PreActBottleneck(
                    in_channels if index == 0 else EXPANSION * filters,
                    filters,
                    stride=stride if index == count - 1 else 1,
                    conv_shortcut=index == 0,
                )
                for index in range(count)
            ]
            stacks.append(nn.Sequential(*blocks))
            in_channels = EXPANSION * filters
        self.stacks = nn.ModuleList(stacks)
        self.post_bn = _batch_norm(in_channels)
        self.post_relu = nn.ReLU()  # a module of its own, so that explanations can hook post_relu's output
        self.out_features = in_channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras's initialisers: glorot-uniform kernels, zero biases, BatchNorm (1, 0, 0, 1)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    @property
    def layers(self) -> list[Layer]:
        """Keras's ``model.layers`` for ``include_top=False``; ``module`` is ``None`` when parameter-free."""
        layers = [
            Layer("input_layer"),
            Layer("conv1_pad"),
            Layer("conv1_conv", self.conv1_conv),
            Layer("pool1_pad"),
            Layer("pool1_pool"),
        ]
        max_pools = 0
        for stack_index, stack in enumerate(self.stacks):
            for block_index, block in enumerate(stack):
                max_pool_name = None
                if block.shortcut_conv is None and block.stride > 1:
                    max_pool_name = "max_pooling2d" + (f"_{max_pools}" if max_pools else "")
                    max_pools += 1
                prefix = f"conv{stack_index + 2}_block{block_index + 1}"
                layers.extend(block.keras_layers(prefix, max_pool_name))
        layers += [Layer("post_bn", self.post_bn), Layer("post_relu")]
        return layers

    def keras_param_count(self) -> int:
        """Parameters as Keras counts them: weights plus BatchNorm moving mean and variance."""
        statistics = sum(
            module.running_mean.numel() + module.running_var.numel()
            for module in self.modules()
            if isinstance(module, nn.BatchNorm2d)
        )
        return sum(p.numel() for p in self.parameters()) + statistics

    def segments(self) -> list[Segment]:
        """The stem, each residual block, and ``post_bn``/``post_relu``: a cut between blocks is where
        the trainer can cache a frozen prefix's activations (``ctframe.Segment``)."""
        starts = {id(layer.module): index for index, layer in enumerate(self.layers) if layer.module}
        chain = [Segment(0, _InputSegment(self))]
        chain += [Segment(starts[id(block.preact_bn)], block) for stack in self.stacks for block in stack]
        return [*chain, Segment(starts[id(self.post_bn)], _OutputSegment(self))]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network on already-normalised input (``x / 127.5 - 1``)."""
        x = stem(self.conv1_conv, x)
        for stack in self.stacks:
            x = stack(x)
        return self.post_relu(self.post_bn(x))

    @property
    def cam_layer(self) -> nn.Module:
        """The layer explanations look at: ``post_relu``, the last feature map before the head pools."""
        return self.post_relu

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # the input keeps its memory format (the caller converts the uint8 batch once); with NHWC
        # weights the first convolution runs NHWC either way
        return self.features(normalise(images)).float()
