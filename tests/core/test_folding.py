"""BatchNorm folding (ctframe.runtime.folding) and the prediction loop's speed settings. Every numeric check
here is fp32: folding is exact up to float rounding (tolerances.FP32_FOLDED_RTOL)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from ctframe.runtime.folding import folded_batchnorm, plan_folding
from ctframe.runtime.performance import channels_last_preferred, resolve_channels_last
from ctframe.runtime.predict import predict_dataset
from tests.plugins.two_phase.test_trainer_toys import ToyImages, make_model
from tests.tolerances import FP32_FOLDED_RTOL, FP32_PROBABILITY_ATOL


class Mixed(nn.Module):
    """One foldable pair, a conv whose output also feeds a shortcut, and a BatchNorm after an add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.bn3 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        return self.bn3(self.bn2(y) + y)


def _randomise(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
    return module.eval()


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=0, atol=FP32_FOLDED_RTOL * scale)


def test_only_a_batchnorm_fed_by_a_convolution_alone_folds() -> None:
    plan = plan_folding(Mixed())
    assert plan.pairs == (("conv1", "bn1"),)
    assert set(plan.unfoldable) == {"bn2", "bn3"}  # conv2's output also feeds the sum; bn3 follows it


def test_folding_is_exact_up_to_rounding_and_leaves_the_weights_alone() -> None:
    model = _randomise(Mixed())
    x = torch.randn(2, 3, 8, 8)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)
        with folded_batchnorm(model) as count:
            folded = model(x)
            assert model.state_dict().keys() == before.keys()
        assert count == 1
        _close(folded, expected)
        assert not torch.equal(folded, expected)  # it really ran folded
        assert "forward" not in model.conv1.__dict__ and "forward" not in model.bn1.__dict__
        assert torch.equal(model(x), expected)  # restored
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_a_batchnorm_in_training_mode_runs_unfolded() -> None:
    model = _randomise(Mixed())
    x = torch.randn(4, 3, 8, 8)
    reference = copy.deepcopy(model).train()
    with folded_batchnorm(model):
        model.train()
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_frozen_only_folds_pairs_without_trainable_parameters() -> None:
    model = _randomise(Mixed())
    with folded_batchnorm(model, frozen_only=True) as count:
        assert count == 0  # every parameter trains
    for parameter in [*model.conv1.parameters(), *model.bn1.parameters()]:
        parameter.requires_grad_(False)
    with folded_batchnorm(model, frozen_only=True) as count:
        assert count == 1


def test_an_untraceable_module_folds_nothing_and_still_runs() -> None:
    class Branchy(Mixed):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn1(self.conv1(x)) if x.sum() > 0 else x  # data-dependent: fx cannot trace it

    model = _randomise(Branchy())
    assert plan_folding(model).pairs == ()
    with folded_batchnorm(model) as count:
        assert count == 0


@pytest.mark.parametrize("channels_last", [True, False])
def test_predictions_folded_equal_unfolded(channels_last: bool) -> None:
    model = make_model()
    _randomise(model.backbone)
    images = ToyImages(12, seed=5)
    reference = predict_dataset(
        model, images, device="cpu", batch_size=5, channels_last=False, fold_batchnorm=False
    )
    got = predict_dataset(model, images, device="cpu", batch_size=5, channels_last=channels_last)
    assert plan_folding(model.backbone).pairs == (("conv1", "bn1"), ("conv2", "bn2"))
    assert got.sample_ids == reference.sample_ids
    np.testing.assert_allclose(got.probabilities, reference.probabilities, rtol=0, atol=FP32_PROBABILITY_ATOL)
    assert "forward" not in model.backbone.conv1.__dict__  # the model is handed back unfolded


def test_channels_last_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_channels_last(True, "cpu") is True and resolve_channels_last(False, "cuda") is False
    assert channels_last_preferred("cuda")[0] is True and channels_last_preferred("mps")[0] is False
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert resolve_channels_last("auto", "cpu") is False
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert resolve_channels_last("auto", "cpu") is torch.backends.mkldnn.is_available()
