"""The bag pooling the mil trainer trains with: the core's aggregation rules, exact in log space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ctframe_mil.pooling import bag_loss, image_log_probabilities, pool_bag, pooling_weights

from ctframe.evaluation.aggregate import Aggregation, aggregate

PROBABILITIES = np.array([0.02, 0.9, 0.35, 0.6, 0.11, 0.75, 0.05])


def _pooled(
    probabilities: np.ndarray, pooling: str, positive_index: int = 1, **options
) -> tuple[float, float]:
    p = torch.tensor(probabilities, dtype=torch.float64)
    logit = torch.log(p) - torch.log1p(-p)  # class 1's logit of a one-logit head
    logits = (logit if positive_index == 1 else -logit).unsqueeze(1)
    log_p, log_q = image_log_probabilities(logits, positive_index)
    log_bag, log_not = pool_bag(log_p, log_q, pooling, **options)
    return float(log_bag.exp()), float(log_not.exp())


@pytest.mark.parametrize("pooling", ["mean", "max", "topk_mean", "noisy_or"])
@pytest.mark.parametrize("positive_index", [0, 1])
def test_pooling_matches_the_core_aggregation(pooling, positive_index):
    """fp32 (the trainer's precision): within 1e-6 of the core's float64 aggregate."""
    bag, not_bag = _pooled(PROBABILITIES, pooling, positive_index, k=3)
    (_,), (expected,), _ = aggregate(PROBABILITIES, ["g"] * len(PROBABILITIES), Aggregation(pooling, k=3))
    assert bag == pytest.approx(expected, abs=1e-6)
    assert bag + not_bag == pytest.approx(1.0, abs=1e-6)


def test_hand_computed_values():
    assert _pooled(PROBABILITIES, "topk_mean", k=2)[0] == pytest.approx((0.9 + 0.75) / 2, abs=1e-6)
    assert _pooled(np.array([0.5, 0.5]), "noisy_or")[0] == pytest.approx(0.75, abs=1e-6)


def test_lse_lies_between_the_mean_and_the_max():
    mean, top = PROBABILITIES.mean(), PROBABILITIES.max()
    soft = _pooled(PROBABILITIES, "lse", temperature=0.01)[0]
    sharp = _pooled(PROBABILITIES, "lse", temperature=100.0)[0]
    middle = _pooled(PROBABILITIES, "lse", temperature=5.0)[0]
    assert soft == pytest.approx(mean, abs=1e-3) and sharp == pytest.approx(top, abs=0.03)
    assert mean < middle < top


def test_a_two_logit_softmax_head_pools_like_a_sigmoid_head():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.4, 0.1]])
    as_one = (logits[:, 1] - logits[:, 0]).unsqueeze(1)
    for positive in (0, 1):
        two = pool_bag(*image_log_probabilities(logits, positive), "noisy_or")
        one = pool_bag(*image_log_probabilities(as_one, positive), "noisy_or")
        assert torch.allclose(torch.stack(two), torch.stack(one), atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max", "topk_mean", "noisy_or", "lse"])
def test_confident_bags_give_finite_losses_and_gradients(pooling):
    """A long noisy-OR bag of near-certain images, or near-zero ones: no log(0), no NaN gradient."""
    for value in (-40.0, 40.0):
        logits = torch.full((300, 1), value, requires_grad=True)
        loss = sum(
            bag_loss(*pool_bag(*image_log_probabilities(logits, 1), pooling), label) for label in (0.0, 1.0)
        )
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_weights_say_what_the_pooling_looked_at():
    weights = {
        pooling: pooling_weights(PROBABILITIES, pooling, k=2)
        for pooling in ("max", "topk_mean", "mean", "noisy_or", "lse")
    }
    assert all(w.sum() == pytest.approx(1.0) for w in weights.values())
    assert weights["max"].tolist() == [0, 1, 0, 0, 0, 0, 0]
    assert weights["topk_mean"].tolist() == [0, 0.5, 0, 0, 0, 0.5, 0]
    assert weights["mean"] == pytest.approx(PROBABILITIES / PROBABILITIES.sum())
    for pooling in ("mean", "noisy_or", "lse"):  # soft rules: every image counts, the likeliest most
        assert np.argsort(weights[pooling]).tolist() == np.argsort(PROBABILITIES).tolist()
