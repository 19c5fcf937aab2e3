"""Prefix-activation cache: phase 2 without augmentation, without running the frozen prefix every step.

Fine-tuning unfreezes only the backbone's last layers. Everything before the first trainable layer is
frozen and runs in inference mode, so without augmentation it maps each image to the same activations in
every epoch. The cut is rounded down to a segment boundary (``Backbone.segments``: for ResNets, the
start of the residual block that holds the first unfrozen layer); the prefix runs once over the train and
validation images, and each epoch then runs only the suffix and the head.

Exactness: the cache holds what the uncached path computes (fp32, or bf16 under bf16 training) unless
``prefix_cache_dtype = "bf16"`` asks an fp32 run to store bf16 (half the size, bf16 rounding of the
activations). Under torchrun each process computes the whole cache itself: no activations cross the
network, at the cost of one prefix pass per process.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ctframe import Segment
from ctframe.api.training import autocast
from ctframe_two_phase.loops import ImageSource, epoch_batches

MEMORY_FRACTION = 0.25
"""``prefix_cache = "auto"`` keeps the cache in memory up to this share of the machine's RAM."""


@dataclass(frozen=True)
class PrefixCut:
    """The backbone's segments split before the first one that holds a trainable parameter."""

    prefix: list[Segment]
    suffix: list[Segment]
    last_cached_layer: str
    """Name of the last backbone layer the cache covers."""


def frozen_prefix(backbone: nn.Module) -> PrefixCut | None:
    """Where to cut ``backbone``, or ``None`` when it has no segments, nothing before its first trainable
    segment, or nothing trainable at all (phase 1's feature cache covers that)."""
    segments_of = getattr(backbone, "segments", None)
    segments = list(segments_of()) if callable(segments_of) else []
    trainable = [any(p.requires_grad for p in s.module.parameters()) for s in segments]
    cut = trainable.index(True) if True in trainable else 0
    if cut == 0:
        return None
    layers = list(backbone.layers)  # type: ignore[attr-defined]
    return PrefixCut(segments[:cut], segments[cut:], layers[segments[cut].start - 1].name)


class SuffixClassifier(nn.Module):
    """The backbone's suffix and the head: what phase 2 trains on cached prefix activations (and what
    DDP wraps under torchrun). It holds the classifier's own modules, no copies."""

    def __init__(self, suffix: Sequence[Segment], head: nn.Module):
        super().__init__()
        self.suffix = nn.Sequential(*(segment.module for segment in suffix))
        self.head = head

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return self.head(self.suffix(activations))


@dataclass
class ActivationSource:
    """Cached prefix activations ``(N, C, H, W)`` (in memory or mapped from a file); each batch is fed
    in ``feed_dtype``, the dtype the prefix computed, and in the model's memory format."""

    activations: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]
    device: str
    feed_dtype: torch.dtype
    channels_last: bool
    path: Path | None = None
    """The file behind ``activations`` when the cache is on disk."""

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def nbytes(self) -> int:
        return self.activations.numel() * self.activations.element_size()

    def batches(
        self, order: Sequence[Sequence[int]], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for batch in order:
            index = torch.as_tensor(batch, dtype=torch.long)
            inputs = self.activations[index].to(self.device, non_blocking=True).to(self.feed_dtype)
            labels = self.labels[index].to(self.device, non_blocking=True)
            yield inputs.contiguous(memory_format=memory_format), labels, [self.sample_ids[i] for i in batch]

    def close(self) -> None:
        """Drop the mapping and delete the file of an on-disk cache (and its folder, once empty)."""
        self.activations = torch.empty(0)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # still holds another split's or process's file
                self.path.parent.rmdir()


def human_size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, path: Path | None) -> torch.Tensor:
    if path is None:
        return torch.empty(shape, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a file a killed run left behind
    count = 1
    for size in shape:
        count *= size
    return torch.from_file(str(path), shared=True, size=count, dtype=dtype).view(shape)


def new_cache(
    first: torch.Tensor, count: int, storage: str, store_bf16: bool, path: Path | None
) -> tuple[torch.Tensor, bool]:
    """Room for ``count`` activations shaped like the ``first`` batch's, and whether it is on disk (the
    prefix cache and the prefix bank store alike)."""
    dtype = torch.bfloat16 if store_bf16 else first.dtype
    shape = (count, *first.shape[1:])
    size = torch.Size(shape).numel() * dtype.itemsize
    too_big = size > MEMORY_FRACTION * physical_memory()
    on_disk = storage == "disk" or (storage == "auto" and too_big)
    return _allocate(shape, dtype, path if on_disk else None), on_disk


# Seven parameters, no phase object: benchmarks/bench_prefix_cache.py builds one from a bare prefix
@torch.no_grad()
def build_activation_cache(
    prefix: Sequence[Segment],
    images: ImageSource,
    batch_size: int,
    precision: str,
    storage: str,
    store_bf16: bool,
    path: Path | None,
) -> tuple[ActivationSource, float]:
    """Run the ``prefix`` segments (inference mode) once over ``images``; the cache and its seconds.

    ``storage`` is ``"memory"``, ``"disk"`` (a file at ``path``) or ``"auto"`` (memory up to
    :data:`MEMORY_FRACTION` of RAM, else disk); the size is known after the first batch.
    """
    started = time.perf_counter()
    modules = [segment.module for segment in prefix]
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    cache: torch.Tensor | None = None
    labels: list[torch.Tensor] = []
    ids: list[str] = []
    feed_dtype, on_disk = torch.float32, False
    try:
        order = epoch_batches(len(images), batch_size, None)
        for inputs, batch_labels, batch_ids in images.batches(order, 0):
            with autocast(precision, images.device):
                output = inputs
                for module in modules:
                    output = module(output)
            if cache is None:
                feed_dtype = output.dtype
                cache, on_disk = new_cache(output, len(images), storage, store_bf16, path)
            cache[len(ids) : len(ids) + len(batch_ids)] = output.to("cpu", cache.dtype)
            labels.append(batch_labels.cpu())
            ids.extend(batch_ids)
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)
    assert cache is not None, "the split is empty"  # the trainer refuses empty splits before this
    source = ActivationSource(
        cache,
        torch.cat(labels),
        ids,
        images.device,
        feed_dtype,
        images.channels_last,
        path if on_disk else None,
    )
    return source, time.perf_counter() - started
