"""Bags: the frozen backbone's features of every image, computed once, grouped by the dataset's groups.

A frozen backbone in inference mode maps an image to the same features every epoch, so one pass over the
train and val images is the whole cost of the backbone; every epoch then trains only the head.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ctframe import DataError, ensure_escaped
from ctframe.api.training import autocast, folded_batchnorm


@dataclass(frozen=True)
class Bags:
    """One split's cached features and its bags (one per group)."""

    features: torch.Tensor
    """``(images, ...)`` float32 on the training device: the backbone's output, pooled by the head's
    ``reduce_features`` when it has one."""
    sample_ids: list[str]
    members: list[torch.Tensor]
    """Per bag, the indices of its images in ``features`` (on the training device)."""
    groups: list[str]
    labels: torch.Tensor
    """Per bag, 1.0 when its group is of the positive class, else 0.0 (on the training device)."""

    def __len__(self) -> int:
        return len(self.groups)


def _collate(items: Sequence[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, list[int], list[str]]:
    return (
        torch.stack([torch.as_tensor(item[0]) for item in items]),
        [int(item[1]) for item in items],
        [str(item[2]) for item in items],
    )


@torch.no_grad()
def image_features(
    backbone: nn.Module,
    dataset: Dataset,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None,
    *,
    device: str,
    batch_size: int,
    precision: str,
    num_workers: int,
) -> tuple[torch.Tensor, list[int], list[str], float]:
    """``(features, labels, sample ids, seconds)`` of every image of ``dataset``, in order, through the
    frozen ``backbone`` in inference mode (BatchNorm folded, as the core predicts)."""
    started = time.perf_counter()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.startswith("cuda"),
    )
    backbone.eval()
    features, labels, ids = [], [], []
    with folded_batchnorm(backbone):
        for images, batch_labels, batch_ids in loader:
            with autocast(precision, device):
                output = backbone(images.to(device, non_blocking=True))
                if reduce is not None:
                    output = reduce(output)
            features.append(output.float().contiguous())
            labels.extend(batch_labels)
            ids.extend(batch_ids)
    return torch.cat(features), labels, ids, time.perf_counter() - started


def make_bags(
    features: torch.Tensor,
    labels: Sequence[int],
    sample_ids: Sequence[str],
    groups: Mapping[str, str],
    positive_index: int,
    split: str,
    unit: str,
) -> Bags:
    """Group one split's images into bags; every image needs a group and every group one class.
    ``split`` and ``unit`` (``"train"``, ``"patient"``) name them in messages."""
    missing = [sample for sample in sample_ids if sample not in groups]
    if missing:
        raise DataError(
            f"{len(missing)} {split} image(s) have no {unit} (first: {ensure_escaped(missing[0])}); "
            f"the mil trainer needs the {unit} of every image: fix the dataset's grouping"
        )
    indices: dict[str, list[int]] = {}
    for index, sample in enumerate(sample_ids):
        indices.setdefault(groups[sample], []).append(index)
    names = sorted(indices)
    mixed = [name for name in names if len({labels[i] for i in indices[name]}) > 1]
    if mixed:
        raise DataError(
            f"{len(mixed)} {split} {unit}(s) hold images of more than one class (first: "
            f"{ensure_escaped(mixed[0])}); a bag needs one label: fix the grouping or the images' classes"
        )
    device = features.device
    return Bags(
        features,
        list(sample_ids),
        [torch.as_tensor(indices[name], dtype=torch.long, device=device) for name in names],
        names,
        torch.tensor([float(labels[indices[name][0]] == positive_index) for name in names], device=device),
    )
