"""Explaining several models whose leading backbone segments are equal: those segments run once per image.

The report's gallery draws each model's Grad-CAM over the test images it shows, and the two-phase
trainer's models share the frozen prefix of their backbone (:func:`~ctframe.runtime.shared_prefix.
shared_segments`). :func:`sharing_classifiers` turns each model into a classifier that runs its own
segments after the shared ones and its head behind one :class:`PrefixMemo`: the shared segments (the
first model's modules) run on an image the memo has not seen, and an image it has seen gets the output
it kept. Images are known by their bytes, so whatever an explainer passes (masked or flipped copies
included) gets the prefix's output for exactly that input; only repeats are saved.

Exactness: a kept output is the one the same weights computed for the same image, in another batch:
equal up to float rounding. A CAM layer inside the shared segments, or an explainer that needs
gradients with respect to the images, gets the plain path (the memo runs the prefix itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from ctframe.runtime.model import Classifier
from ctframe.runtime.shared_prefix import segment_modules, shared_segments

KEPT_IMAGES = 256
"""Outputs a memo keeps at most (ResNet101V2 at 224 px, cut at conv4_block13: 0.8 MB each); images
beyond it are computed every time."""


def _key(image: torch.Tensor) -> bytes:
    data = image.detach().cpu().contiguous()
    digest = hashlib.blake2b(str((tuple(data.shape), data.dtype)).encode(), digest_size=16)
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.digest()


class PrefixMemo(nn.Module):
    """The shared segments, run once per distinct image for every model that uses this memo."""

    def __init__(self, segments: Sequence[nn.Module]):
        super().__init__()
        self.prefix = nn.Sequential(*segments)
        self.kept: dict[bytes, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.requires_grad or len(images) == 0:  # the caller wants the graph through the prefix
            return self.prefix(images)
        keys = [_key(image) for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self.kept]
        computed = {}
        if missing:
            outputs = self.prefix(images[missing])
            for i, output in zip(missing, outputs, strict=True):
                computed[keys[i]] = output.detach()
                if len(self.kept) < KEPT_IMAGES:
                    self.kept[keys[i]] = computed[keys[i]]
        return torch.stack([self.kept.get(key, computed.get(key)) for key in keys])


class _ChainedBackbone(nn.Module):
    """A memo's shared segments, then one model's own: the backbone's output, with its ``cam_layer``."""

    def __init__(self, memo: PrefixMemo, rest: Sequence[nn.Module], layer: nn.Module | None):
        super().__init__()
        self.memo = memo
        self.rest = nn.ModuleList(rest)
        self._layer = [layer]  # in a list: the layer is one of rest's modules, not a second child

    @property
    def cam_layer(self) -> nn.Module | None:
        return self._layer[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.memo(images)
        for segment in self.rest:
            features = segment(features)
        return features


def _inside(layer: nn.Module | None, modules: Sequence[nn.Module]) -> bool:
    return layer is not None and any(layer is inner for module in modules for inner in module.modules())


def sharing_classifiers(classifiers: Sequence[Classifier]) -> list[Classifier]:
    """``classifiers`` (one architecture) as classifiers that compute their shared leading segments once
    per image for all of them; the classifiers themselves when fewer than two share a segment, or when
    the CAM layer lies in the shared part. Each result uses its model's own modules (no copies)."""
    if len(classifiers) < 2:
        return list(classifiers)
    states = [classifier.state_dict() for classifier in classifiers]
    shared = shared_segments(classifiers[0], states)
    chains = [segment_modules(classifier) for classifier in classifiers]
    layers = [getattr(classifier.backbone, "cam_layer", None) for classifier in classifiers]
    if not shared or any(_inside(layer, chain[:shared]) for layer, chain in zip(layers, chains, strict=True)):
        return list(classifiers)
    memo = PrefixMemo(chains[0][:shared])
    return [
        Classifier(_ChainedBackbone(memo, chain[shared:], layer), classifier.head, classifier.class_names)
        for classifier, chain, layer in zip(classifiers, chains, layers, strict=True)
    ]
