"""One epoch over the training bags, and the validation bags' loss: the head only, on cached features."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ctframe_mil.bags import Bags
from ctframe_mil.options import MilOptions
from ctframe_mil.pooling import bag_loss, image_log_probabilities, pool_bag

_EVAL_CHUNK = 4096  # images per head pass while validating


def bag_steps(bags: Bags, bags_per_step: int, generator: torch.Generator) -> list[list[int]]:
    """The epoch's steps: shuffled bags, ``bags_per_step`` per step; a step of a single image joins the
    one before it (the head's BatchNorm cannot train on one sample)."""
    order = torch.randperm(len(bags), generator=generator).tolist()
    steps = [order[start : start + bags_per_step] for start in range(0, len(order), bags_per_step)]
    sizes = [sum(bags.members[b].numel() for b in step) for step in steps]
    if len(steps) > 1 and sizes[-1] < 2:
        steps[-2].extend(steps.pop())
    return steps


def _pooled_losses(
    logits: torch.Tensor,
    bags: Bags,
    chosen: list[int],
    options: MilOptions,
    positive_index: int,
    pooling: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chosen bag: its loss and its pooled probability; ``logits`` are of its images, in order."""
    log_p, log_q = image_log_probabilities(logits, positive_index)
    losses, pooled, start = [], [], 0
    for b in chosen:
        size = bags.members[b].numel()
        log_bag, log_not = pool_bag(
            log_p[start : start + size],
            log_q[start : start + size],
            pooling,
            options.k,
            options.temperature,
        )
        losses.append(bag_loss(log_bag, log_not, bags.labels[b]))
        pooled.append(log_bag.exp())
        start += size
    return torch.stack(losses), torch.stack(pooled)


@dataclass(frozen=True)
class EpochResult:
    loss: float
    images: int
    seconds: float


def train_epoch(
    head: nn.Module,
    bags: Bags,
    optimizer: torch.optim.Optimizer,
    options: MilOptions,
    positive_index: int,
    generator: torch.Generator,
    pooling: str,
) -> EpochResult:
    """One pass over the training bags, pooled by ``pooling``; the loss is the mean bag cross-entropy
    plus the head's penalty."""
    started, total, seen, images = time.perf_counter(), 0.0, 0, 0
    head.train()
    for step in bag_steps(bags, options.bags_per_step, generator):
        index = torch.cat([bags.members[b] for b in step])
        losses, _ = _pooled_losses(head(bags.features[index]), bags, step, options, positive_index, pooling)
        loss = losses.mean() + head.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not np.isfinite(value):
            raise FloatingPointError(f"training bag loss became {value}; lower trainer.lr")
        total, seen, images = total + value * len(step), seen + len(step), images + index.numel()
    return EpochResult(total / seen, images, time.perf_counter() - started)


@torch.no_grad()
def recalibrate_batchnorm(head: nn.Module, features: torch.Tensor) -> int:
    """Recompute the running statistics of the head's BatchNorm layers over ``features`` (all training
    images); returns how many layers. With a few bag steps per epoch, moving averages (Keras momentum
    0.99) stay far from the data, and the inference-mode head that validation and the engine use would
    differ from the one trained."""
    norms = [
        module
        for module in head.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    if not norms:
        return 0
    momenta = [module.momentum for module in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average: every chunk weighs the same
    head.train()
    try:
        for start in range(0, len(features), _EVAL_CHUNK):
            head(features[start : start + _EVAL_CHUNK])
    finally:
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
    return len(norms)


@dataclass(frozen=True)
class BagEvaluation:
    loss: float
    """Mean bag cross-entropy (no penalty): what early stopping watches."""
    accuracy: float
    """Bags whose pooled probability is on their label's side of 0.5."""
    bag_probabilities: np.ndarray
    image_probabilities: np.ndarray
    """The positive class's probability of every image, in ``bags.sample_ids`` order."""


@torch.no_grad()
def evaluate(head: nn.Module, bags: Bags, options: MilOptions, positive_index: int) -> BagEvaluation:
    head.eval()
    logits = torch.cat(
        [
            head(bags.features[start : start + _EVAL_CHUNK])
            for start in range(0, len(bags.features), _EVAL_CHUNK)
        ]
    )
    order = torch.cat(bags.members)
    everything = list(range(len(bags)))
    losses, pooled = _pooled_losses(logits[order], bags, everything, options, positive_index, options.pooling)
    correct = ((pooled >= 0.5).float() == bags.labels).float().mean()
    log_p, _ = image_log_probabilities(logits, positive_index)
    return BagEvaluation(
        float(losses.mean()),
        float(correct),
        pooled.cpu().numpy().astype(np.float64),
        log_p.exp().cpu().numpy().astype(np.float64),
    )
