"""Augmentation bank: phase 1 with augmentation, without running the frozen backbone every epoch.

The frozen backbone maps an augmented image to the same features whenever it sees it, so phase 1 can
draw from a finite set of views: K augmented views of every training image go through the backbone once
(K passes over the training split), and each epoch then trains the head on one view per image, drawn
from the epoch's seed. That is a sample of K draws per image from the augmentation distribution instead
of a fresh draw every epoch: with K >= epochs most images never repeat a view, with K << epochs they
repeat ~epochs / K times. Validation images are never augmented; their features are computed once too.

Exactness: view k of every image is augmented under its own seed (``view_seed``), so the bank is the
same whenever it is built (a resumed run rebuilds it), and an epoch's draw depends only on its seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ctframe.api.training import autocast
from ctframe_two_phase.checkpoints import epoch_seed, seed_everything
from ctframe_two_phase.loops import ImageSource, epoch_batches

AUTO_VIEWS = 8
"""Views per image of ``augmentation_bank = "auto"``."""
AUTO_MIN_EPOCHS = 3 * AUTO_VIEWS
"""``"auto"`` builds a bank only for this many phase-1 epochs or more: building costs K epochs of
backbone passes, so at 3K epochs it saves at least two thirds of them even if no epoch stops early."""
_BANK_PHASE = 1000  # keeps view seeds apart from the (phase, epoch) seeds of the epochs themselves


def bank_views(setting: str | int, epochs: int) -> int:
    """Views per image the ``augmentation_bank`` setting asks for in a phase of ``epochs`` (0: none)."""
    if setting == "off":
        return 0
    if setting == "auto":
        return AUTO_VIEWS if epochs >= AUTO_MIN_EPOCHS else 0
    return int(setting)


def view_seed(run_seed: int, phase_index: int, view: int) -> int:
    return epoch_seed(run_seed, _BANK_PHASE + phase_index, view)


@dataclass
class BankSource:
    """``features[k, i]``: view k of training image i; :meth:`batches` draws one view per image."""

    features: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def views(self) -> int:
        return self.features.shape[0]

    def batches(
        self, order: Sequence[Sequence[int]], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        # the draw has its own generator: the global RNG (dropout) sees what it sees uncached
        drawn = torch.randint(self.views, (len(self),), generator=torch.Generator().manual_seed(seed))
        drawn = drawn.to(self.features.device)
        for batch in order:
            index = torch.as_tensor(batch, dtype=torch.long, device=self.features.device)
            yield self.features[drawn[index], index], self.labels[index], [self.sample_ids[i] for i in batch]

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


# Seven parameters, no phase object: test_trainer_speed.py builds a bank from a bare backbone and images
@torch.no_grad()
def build_bank(
    backbone: nn.Module,
    images: ImageSource,
    views: int,
    batch_size: int,
    precision: str,
    seeds: Callable[[int], int],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[BankSource, float]:
    """Run ``backbone`` (inference mode) over ``views`` augmented passes of ``images``; the bank and its
    seconds. ``seeds(k)`` seeds pass k: the global RNGs (augmentation in this process) and the loader's
    generator (augmentation in workers). Features are stored float32, as the uncached path feeds them."""
    started = time.perf_counter()
    was_training = backbone.training
    backbone.eval()
    order = epoch_batches(len(images), batch_size, None)
    passes, labels, ids = [], None, None
    try:
        for view in range(views):
            seed_everything(seeds(view))
            outputs, view_labels, view_ids = [], [], []
            for inputs, batch_labels, batch_ids in images.batches(order, seeds(view)):
                with autocast(precision, images.device):
                    output = backbone(inputs)
                    if reduce is not None:
                        output = reduce(output)
                outputs.append(output.float().contiguous())
                view_labels.append(batch_labels)
                view_ids.extend(batch_ids)
            passes.append(torch.cat(outputs))
            labels, ids = torch.cat(view_labels), view_ids
    finally:
        backbone.train(was_training)
    return BankSource(torch.stack(passes), labels, ids), time.perf_counter() - started
