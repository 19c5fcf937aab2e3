"""Prefix bank: phase 2 with augmentation, without running the frozen prefix every step.

The prefix cache (prefix.py) needs identical inputs every epoch; with augmentation they differ. The
frozen prefix is still a fixed function in inference mode, so phase 2 can draw from a finite set of
views, as phase 1's augmentation bank (bank.py) does: K augmented views of every training image go through
the prefix once (view k under its own seed, ``bank.view_seed``), stored as the prefix cache stores
(``prefix_cache`` says memory, disk or auto; ``prefix_cache_dtype`` the dtype), and each epoch trains the
suffix and head on one view per image drawn from the epoch's seed. A resumed run rebuilds the same bank
and draws the same views. Validation images are not augmented: their activations are the prefix cache's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ctframe import Segment
from ctframe.api.training import autocast, distributed
from ctframe_two_phase.bank import view_seed
from ctframe_two_phase.checkpoints import seed_everything
from ctframe_two_phase.loops import ImageSource, epoch_batches
from ctframe_two_phase.phase import PhaseJob
from ctframe_two_phase.prefix import (
    ActivationSource,
    PrefixCut,
    build_activation_cache,
    human_size,
    new_cache,
)
from ctframe_two_phase.run_files import CACHE


@dataclass
class PrefixBankSource(ActivationSource):
    """``activations[k, i]``: the prefix's output for view k of training image i."""

    @property
    def views(self) -> int:
        return self.activations.shape[0]

    def batches(
        self, order: Sequence[Sequence[int]], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        # its own generator: the global RNG (dropout) is seeded by the epoch and left to the model
        drawn = torch.randint(self.views, (len(self),), generator=torch.Generator().manual_seed(seed))
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for batch in order:
            index = torch.as_tensor(batch, dtype=torch.long)
            inputs = self.activations[drawn[index], index].to(self.device, non_blocking=True)
            labels = self.labels[index].to(self.device, non_blocking=True)
            inputs = inputs.to(self.feed_dtype).contiguous(memory_format=memory_format)
            yield inputs, labels, [self.sample_ids[i] for i in batch]


@torch.no_grad()
def build_prefix_bank(
    prefix: Sequence[Segment],
    images: ImageSource,
    views: int,
    batch_size: int,
    precision: str,
    storage: str,
    store_bf16: bool,
    path: Path | None,
    seeds: Callable[[int], int],
) -> tuple[PrefixBankSource, float]:
    """Run the ``prefix`` segments (inference mode) over ``views`` augmented passes of ``images``; the
    bank and its seconds. ``seeds(k)`` seeds pass k: the global RNGs (augmentation in this process) and
    the loader's generator (augmentation in workers). ``storage``, ``store_bf16`` and ``path`` as in
    :func:`~ctframe_two_phase.prefix.build_activation_cache` (the size counts all views)."""
    started = time.perf_counter()
    modules = [segment.module for segment in prefix]
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    bank: torch.Tensor | None = None
    labels: list[torch.Tensor] = []
    ids: list[str] = []
    feed_dtype, on_disk = torch.float32, False
    order = epoch_batches(len(images), batch_size, None)
    try:
        for view in range(views):
            seed_everything(seeds(view))
            row = 0
            for inputs, batch_labels, batch_ids in images.batches(order, seeds(view)):
                with autocast(precision, images.device):
                    output = inputs
                    for module in modules:
                        output = module(output)
                if bank is None:
                    feed_dtype = output.dtype
                    flat, on_disk = new_cache(output, views * len(images), storage, store_bf16, path)
                    bank = flat.view(views, len(images), *flat.shape[1:])
                bank[view, row : row + len(batch_ids)] = output.to("cpu", bank.dtype)
                row += len(batch_ids)
                if view == 0:
                    labels.append(batch_labels.cpu())
                    ids.extend(batch_ids)
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)
    assert bank is not None, "the split is empty"  # the trainer refuses empty splits before this
    source = PrefixBankSource(
        bank,
        torch.cat(labels),
        ids,
        images.device,
        feed_dtype,
        images.channels_last,
        path if on_disk else None,
    )
    return source, time.perf_counter() - started


def prefix_bank_sources(
    job: PhaseJob, cut: PrefixCut, train: ImageSource, val: ImageSource, views: int
) -> tuple[PrefixBankSource, ActivationSource]:
    """Phase 2 with augmentation and a ``prefix_bank``: ``views`` augmented views per training image and
    the (never augmented) validation images through the frozen prefix."""
    options, folder = job.options, CACHE.path(job.run_path)
    suffix = f"{distributed.rank()}.bin"  # every process computes (and maps) its own copy
    store_bf16 = options.prefix_cache_dtype == "bf16"
    seeds = lambda k: view_seed(job.context.seed, job.phase.index, k)  # noqa: E731 - one pass's seed
    bank, bank_seconds = build_prefix_bank(
        cut.prefix,
        train,
        views,
        job.eval_batch_size,
        job.precision,
        options.prefix_cache,
        store_bf16,
        folder / f"{job.phase.key}-prefix-bank.{suffix}",
        seeds,
    )
    val_cache, val_seconds = build_activation_cache(
        cut.prefix,
        val,
        job.eval_batch_size,
        job.precision,
        options.prefix_cache,
        store_bf16,
        folder / f"{job.phase.key}-prefix-val.{suffix}",
    )
    shape = "x".join(map(str, bank.activations.shape[2:]))
    where = "in memory" if bank.path is None else f"in {folder}"
    job.context.logger.info(
        f"{job.phase.key}: prefix bank (up to {cut.last_cached_layer}; {len(cut.suffix)} segments train) "
        f"of {views} views x {len(bank)} train images and {len(val_cache)} val images: {shape} "
        f"{str(bank.activations.dtype).removeprefix('torch.')}, "
        f"{human_size(bank.nbytes + val_cache.nbytes)} {where}, {bank_seconds + val_seconds:.1f} s"
    )
    return bank, val_cache
