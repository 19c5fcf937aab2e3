"""Every registered head: feature maps ``(N, in_features, h, w)`` -> logits ``(N, num_outputs)``, a
``penalty()`` for the loss, and the optional parameter-free ``reduce_features`` first step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ctframe import Head, Kind
from tests.core.contracts.components import build, names

IN_FEATURES = 8


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("name", names(Kind.HEAD))
def test_head_maps_features_to_logits_and_has_a_penalty(name: str, classes: int, tmp_path: Path):
    torch.manual_seed(0)
    head = build(Kind.HEAD, name, tmp_path, IN_FEATURES, classes)
    assert isinstance(head, nn.Module) and isinstance(head, Head)
    outputs = head.num_outputs
    assert outputs == classes or (classes == 2 and outputs == 1), f"num_outputs {outputs} for {classes}"

    features = torch.randn(4, IN_FEATURES, 3, 3)
    head.train()
    logits = head(features)
    assert logits.shape == (4, outputs) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    penalty = head.penalty()
    assert isinstance(penalty, torch.Tensor) and penalty.ndim == 0 and torch.isfinite(penalty)
    (logits.sum() + penalty).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    head.eval()
    with torch.no_grad():
        assert torch.equal(head(features), head(features)), "eval mode is deterministic"


@pytest.mark.parametrize("name", names(Kind.HEAD))
def test_reduced_features_give_the_same_logits(name: str, tmp_path: Path):
    """``reduce_features`` (optional): a first step without parameters whose result ``forward`` also
    accepts, so a trainer may cache it instead of whole feature maps."""
    torch.manual_seed(0)
    head = build(Kind.HEAD, name, tmp_path, IN_FEATURES, 2).eval()
    reduce = getattr(head, "reduce_features", None)
    if reduce is None:
        pytest.skip(f"{name} offers no reduce_features (optional)")
    features = torch.randn(4, IN_FEATURES, 3, 3, requires_grad=True)
    reduced = reduce(features)
    reduced.sum().backward()
    assert all(p.grad is None for p in head.parameters()), "reduce_features uses no parameter"
    with torch.no_grad():
        torch.testing.assert_close(head(reduced), head(features))
