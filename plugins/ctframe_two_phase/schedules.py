"""Learning rate per epoch: a linear warm-up, then constant, step decay or cosine.

The rate is a function of the epoch alone, set on the optimiser before each epoch (not per step), so a
resumed run recomputes it and needs no scheduler state; the history's ``lr`` column records it.
"""

from __future__ import annotations

import math

import torch

from ctframe_two_phase.options import PhaseOptions

WARMUP_START = 0.1
"""The warm-up's first epoch runs at this fraction of ``lr``."""


def learning_rate(options: PhaseOptions, epoch: int) -> float:
    """The rate of 0-based ``epoch``.

    Warm-up (``epoch < W``): ``lr * (0.1 + 0.9 * epoch / W)``. After it, with ``t = epoch - W`` and
    ``T = epochs - W``: constant ``lr``; step ``lr * gamma ** (t // step_size)``; cosine
    ``min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2``.
    """
    lr, warmup = options.lr, options.warmup_epochs
    if epoch < warmup:
        return lr * (WARMUP_START + (1 - WARMUP_START) * epoch / warmup)
    t, span = epoch - warmup, max(options.epochs - warmup, 1)
    if options.schedule == "step":
        return lr * options.gamma ** (t // options.step_size)
    if options.schedule == "cosine":
        return options.min_lr + (lr - options.min_lr) * (1 + math.cos(math.pi * t / span)) / 2
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
