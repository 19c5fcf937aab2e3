"""Feature cache: a frozen backbone without augmentation maps each image to the same features
every epoch, so phase 1 computes them once and then trains only the head."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import Subset

from ctframe.api.training import autocast, distributed
from ctframe_two_phase.loops import FeatureSource, ImageSource, epoch_batches


def backbone_is_frozen(backbone: nn.Module) -> bool:
    return not any(parameter.requires_grad for parameter in backbone.parameters())


@torch.no_grad()
def compute_features(
    backbone: nn.Module,
    images: ImageSource,
    batch_size: int,
    precision: str,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[FeatureSource, float]:
    """Run ``backbone`` (in inference mode) once over ``images``; return the cache and its seconds.

    ``reduce`` is the head's parameter-free first step (``head.reduce_features``, e.g. global
    pooling) when it has one: caching its output keeps the cache small. Features stay on the
    training device in float32 so that the head sees the same numbers as on the uncached path.
    """
    started = time.perf_counter()
    was_training = backbone.training
    backbone.eval()
    features, labels, ids = [], [], []
    try:
        for inputs, batch_labels, batch_ids in images.batches(
            epoch_batches(len(images), batch_size, None), 0
        ):
            with autocast(precision, images.device):
                output = backbone(inputs)
                if reduce is not None:
                    output = reduce(output)
            features.append(output.float().contiguous())
            labels.append(batch_labels)
            ids.extend(batch_ids)
    finally:
        backbone.train(was_training)
    source = FeatureSource(torch.cat(features), torch.cat(labels), ids)
    return source, time.perf_counter() - started


def compute_features_shared(
    backbone: nn.Module,
    images: ImageSource,
    batch_size: int,
    precision: str,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[FeatureSource, float]:
    """:func:`compute_features` under torchrun: each process runs the backbone on its contiguous share
    of ``images`` and every process then holds the whole cache, in order (each image computed once).
    In one process it is :func:`compute_features` itself."""
    if not distributed.active():
        return compute_features(backbone, images, batch_size, precision, reduce)
    start, stop = distributed.shard_range(len(images))
    part, seconds = None, 0.0
    if stop > start:
        share = replace(images, dataset=Subset(images.dataset, range(start, stop)))
        computed, seconds = compute_features(backbone, share, batch_size, precision, reduce)
        part = (computed.features.cpu(), computed.labels.cpu(), computed.sample_ids)
    parts = [p for p in distributed.gather(part) if p is not None]
    device = images.device
    features = torch.cat([p[0] for p in parts]).to(device)
    labels = torch.cat([p[1] for p in parts]).to(device)
    return FeatureSource(features, labels, [i for p in parts for i in p[2]]), seconds
