"""The small steps of training: batch order, one epoch, evaluation.

Both batch sources (images through a data loader, or cached backbone features) yield
``(inputs, labels, sample_ids)`` for an explicit list of index batches, so the cached and the
uncached paths see exactly the same batches in the same order.

Under torchrun every process draws the same global batches and trains on its contiguous part of each
(:func:`rank_batches`); validation is split the same way and its sums are added over processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ctframe import RecipeError
from ctframe.api.training import (
    Classifier,
    autocast,
    classification_loss,
    distributed,
    freeze_inactive_batchnorm,
    logits_to_probabilities,
)

Forward = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of inputs (images or cached features) to logits."""


class BatchSource(Protocol):
    def __len__(self) -> int: ...

    def batches(
        self, order: Sequence[Sequence[int]], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        """Yield ``(inputs, labels, sample_ids)`` on the training device, one per index batch."""
        ...


def epoch_batches(size: int, batch_size: int, generator: torch.Generator | None) -> list[list[int]]:
    """Index batches for one epoch, shuffled with ``generator`` (in order when it is ``None``).

    A final batch of a single sample joins the one before it: BatchNorm cannot train on one
    sample (Keras silently can, torch raises).
    """
    order = torch.randperm(size, generator=generator).tolist() if generator is not None else list(range(size))
    batches = [order[start : start + batch_size] for start in range(0, size, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def rank_batches(order: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[float] | None]:
    """This process's part of every global batch, and the factor for each part's mean loss.

    ``batch_size`` stays the global batch: with N processes each trains on about ``batch_size / N``
    images per step. DDP averages gradients over processes, so a part's loss is scaled by
    ``N * part / batch``: the sum is then the gradient of the global batch's mean, even for uneven
    parts. A final batch with fewer than two images per process joins the one before it (BatchNorm
    cannot train on one sample). In one process: ``order`` itself and no factors.
    """
    world = distributed.world_size() if distributed.active() else 1
    if world == 1:
        return [list(batch) for batch in order], None
    batches = [list(batch) for batch in order]
    if len(batches) > 1 and len(batches[-1]) < 2 * world:
        batches[-2].extend(batches.pop())
    if any(len(batch) < 2 * world for batch in batches):
        raise RecipeError(
            f"trainer.batch_size is the global batch and the train split has {sum(map(len, batches))} "
            f"images: with {world} processes both must be at least {2 * world} (2 images per process)"
        )
    parts = distributed.shard_batches(batches)
    return parts, [world * len(part) / len(batch) for part, batch in zip(parts, batches, strict=True)]


class _Augmented(Dataset):
    """Applies the training augmentation to the image of each ``(image, label, id)`` item."""

    def __init__(self, dataset: Dataset, augment: Callable[[torch.Tensor], torch.Tensor]):
        self.dataset = dataset
        self.augment = augment

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, label, sample_id = self.dataset[index]
        return self.augment(image), label, sample_id


def _collate(items: list[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images = torch.stack([torch.as_tensor(item[0]) for item in items])
    labels = torch.as_tensor([int(item[1]) for item in items], dtype=torch.long)
    return images, labels, [str(item[2]) for item in items]


@dataclass
class ImageSource:
    """Images from a dataset through a ``DataLoader`` (uint8 until the backbone)."""

    dataset: Dataset
    device: str
    num_workers: int = 0
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    channels_last: bool = False

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(
        self, order: Sequence[Sequence[int]], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        dataset = _Augmented(self.dataset, self.augment) if self.augment is not None else self.dataset
        # The generator seeds the loader's workers (torch, random and numpy in each), so augmentation
        # in workers repeats exactly on resume; it also keeps the loader off the global RNG.
        loader = DataLoader(
            dataset,
            batch_sampler=[list(batch) for batch in order],
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.startswith("cuda"),
            generator=torch.Generator().manual_seed(seed),
        )
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for images, labels, ids in loader:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
            yield images, labels.to(self.device, non_blocking=True), ids


@dataclass
class FeatureSource:
    """Backbone outputs computed once (see ``features.py``); indexing replaces the backbone."""

    features: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def batches(
        self, order: Sequence[Sequence[int]], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for batch in order:
            index = torch.as_tensor(batch, dtype=torch.long, device=self.features.device)
            yield self.features[index], self.labels[index], [self.sample_ids[i] for i in batch]


@dataclass(frozen=True)
class EpochResult:
    loss: float
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


# Ten parameters, no phase object: bench_feature_cache.py and bench_prefix_cache.py time this step alone
def train_one_epoch(
    forward: Forward,
    penalty: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    source: BatchSource,
    order: Sequence[Sequence[int]],
    seed: int,
    precision: str,
    device: str,
    *,
    on_batch: Callable[[int, float], None] = lambda images, loss: None,
    scales: Sequence[float] | None = None,
    class_weights: torch.Tensor | None = None,
) -> EpochResult:
    """One pass over ``order``; the loss is classification loss + head penalty, as Keras reports it
    (mean over samples, over all processes under torchrun). The caller sets train/eval modes.
    ``scales`` (from :func:`rank_batches`) multiply each batch's loss before ``backward``;
    ``class_weights`` weight the training loss per class (``classification_loss``)."""
    total, seen, started = 0.0, 0, time.perf_counter()
    for step, (inputs, labels, _) in enumerate(source.batches(order, seed)):
        with autocast(precision, device):
            logits = forward(inputs)
        loss = classification_loss(logits, labels, class_weights) + penalty()
        optimizer.zero_grad(set_to_none=True)
        (loss * scales[step] if scales is not None else loss).backward()
        optimizer.step()
        value = float(loss.detach())
        if not np.isfinite(value):
            raise FloatingPointError(f"training loss became {value}; lower the learning rate")
        total += value * len(labels)
        seen += len(labels)
        on_batch(len(labels), value)
    if scales is not None:
        total, seen = distributed.sum_over_ranks([total, seen])
    return EpochResult(total / max(seen, 1), int(seen), time.perf_counter() - started)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    """Mean classification loss plus the head penalty (Keras' val_loss includes regularisers)."""
    accuracy: float
    labels: np.ndarray
    probabilities: np.ndarray
    sample_ids: tuple[str, ...]


@torch.no_grad()
def evaluate(
    forward: Forward,
    penalty: Callable[[], torch.Tensor],
    source: BatchSource,
    batch_size: int,
    precision: str,
    device: str,
) -> Evaluation:
    """Loss, accuracy and class probabilities on every sample of ``source``, in order.

    Under torchrun each process scores its contiguous share and the loss and accuracy are over all
    samples (sums added over processes); the arrays hold this process's share only.
    """
    start, stop = distributed.shard_range(len(source))
    order = [[start + i for i in batch] for batch in epoch_batches(stop - start, batch_size, generator=None)]
    losses, correct, labels, probabilities, ids = 0.0, 0, [], [], []
    for inputs, batch_labels, batch_ids in source.batches(order, seed=0):
        with autocast(precision, device):
            logits = forward(inputs)
        losses += float(classification_loss(logits, batch_labels)) * len(batch_labels)
        batch_probabilities = logits_to_probabilities(logits).cpu()
        correct += int((batch_probabilities.argmax(dim=1) == batch_labels.cpu()).sum())
        labels.append(batch_labels.cpu())
        probabilities.append(batch_probabilities)
        ids.extend(batch_ids)
    losses, correct, count = distributed.sum_over_ranks([losses, correct, len(ids)])
    if not count:
        raise ValueError("cannot evaluate on an empty split")
    label_array = torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64)
    probability_array = torch.cat(probabilities).double().numpy() if probabilities else np.zeros((0, 0))
    return Evaluation(
        losses / count + float(penalty()), correct / count, label_array, probability_array, tuple(ids)
    )


def set_train_mode(model: Classifier, backbone_frozen: bool, update_batchnorm: bool) -> None:
    """Training mode, except what Keras runs in inference mode: frozen BatchNorm layers (and, when
    ``update_batchnorm`` is off, every backbone BatchNorm). A fully frozen backbone is a fixed
    feature extractor and runs in eval mode, which is what makes the feature cache exact."""
    model.train()
    if backbone_frozen:
        model.backbone.eval()  # type: ignore[attr-defined]
    else:
        freeze_inactive_batchnorm(model.backbone, update_trainable=update_batchnorm)  # type: ignore[arg-type]
    freeze_inactive_batchnorm(model.head)  # type: ignore[arg-type]
