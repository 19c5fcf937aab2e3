"""Differentiable bag pooling: a bag's positive-class probability from its images', with the rules of the
core's ``[evaluation] aggregate`` (plus ``lse``), computed in log space so the loss never sees log(0).

Each rule returns ``(log P, log (1 - P))`` of the bag from ``(log p_i, log (1 - p_i))`` of its images:
the bag's binary cross-entropy is then exact even for confident bags (noisy-OR of long bags, a max of
0.99999).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

_TINY = 1e-7


def image_log_probabilities(logits: torch.Tensor, positive_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, log (1 - p))`` per image, ``p`` the positive class's probability, for a one-logit
    (sigmoid of class 1) or a two-logit (softmax) head."""
    logits = logits.float()
    if logits.shape[1] == 1:
        one, zero = F.logsigmoid(logits[:, 0]), F.logsigmoid(-logits[:, 0])
        return (one, zero) if positive_index == 1 else (zero, one)
    log = torch.log_softmax(logits, dim=1)
    return log[:, positive_index], log[:, 1 - positive_index]


def _log_mean(values: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(values, dim=0) - math.log(values.numel())


def _log_one_minus_exp(log_q: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate on both sides of -log 2 (Maechler's log1mexp)."""
    x = log_q.clamp(max=-1e-12)  # a bag of images at p = 0 exactly: P = 1e-12, not log 0
    near = x > -math.log(2.0)
    # each branch gets a harmless input where it is not used: its gradient would be 0 * inf = NaN there
    spare = torch.full_like(x, -1.0)
    close = torch.log(-torch.expm1(torch.where(near, x, spare)))
    far = torch.log1p(-torch.exp(torch.where(near, spare, x)))
    return torch.where(near, close, far)


def pool_bag(
    log_p: torch.Tensor, log_q: torch.Tensor, pooling: str, k: int = 5, temperature: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log P, log (1 - P))`` of one bag; ``log_p``, ``log_q``: its images', shape ``(n,)``."""
    if pooling == "mean":
        return _log_mean(log_p), _log_mean(log_q)
    if pooling == "max":
        top = torch.argmax(log_p)
        return log_p[top], log_q[top]
    if pooling == "topk_mean":
        top = torch.topk(log_p, min(k, log_p.numel())).indices
        return _log_mean(log_p[top]), _log_mean(log_q[top])
    if pooling == "noisy_or":  # 1 - P = prod (1 - p_i)
        log_none = log_q.sum()
        return _log_one_minus_exp(log_none), log_none
    if pooling == "lse":  # P = log(mean exp(r p_i)) / r, between the mean (r -> 0) and the max
        bag = _log_mean(temperature * log_p.exp()) / temperature
        bag = bag.clamp(_TINY, 1.0 - _TINY)
        return bag.log(), torch.log1p(-bag)
    raise ValueError(f"unknown pooling {pooling!r}")


def bag_loss(log_bag: torch.Tensor, log_not_bag: torch.Tensor, label: float) -> torch.Tensor:
    """Binary cross-entropy of one bag against its label (1: positive)."""
    return -(label * log_bag + (1.0 - label) * log_not_bag)


def pooling_weights(
    probabilities: np.ndarray, pooling: str, k: int = 5, temperature: float = 5.0
) -> np.ndarray:
    """Each image's share of its bag's pooled value (summing to 1): what the pooling looked at.

    ``max``: 1 for the highest image; ``topk_mean``: 1/k for each of the k highest; ``mean``: p_i / sum p;
    ``noisy_or``: -log(1 - p_i) / sum (each image's share of the evidence); ``lse``: softmax(r p_i), the
    gradient of the pooled value."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    weights = np.zeros_like(p)
    order = np.argsort(-p, kind="stable")
    if pooling == "max":
        weights[order[0]] = 1.0
        return weights
    if pooling == "topk_mean":
        chosen = order[: min(k, p.size)]
        weights[chosen] = 1.0 / chosen.size
        return weights
    if pooling == "mean":
        evidence = p
    elif pooling == "noisy_or":
        evidence = -np.log1p(-np.minimum(p, 1.0 - 1e-12))
    elif pooling == "lse":
        evidence = np.exp(temperature * (p - p.max()))
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    total = evidence.sum()
    return evidence / total if total > 0 else np.full(p.size, 1.0 / p.size)
