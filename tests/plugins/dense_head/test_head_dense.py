"""The dense head: shapes, parameter count, initialisation, the Keras L2 term, registration."""

from __future__ import annotations

import math
import re

import pytest
import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from pydantic import ValidationError

from ctframe import Kind
from ctframe.base.contracts import Head
from ctframe.registry.plugins import build_registry
from tests.conftest import REPO


def test_outputs_sigmoid_for_two_classes_softmax_otherwise():
    features = torch.randn(4, 32, 3, 3)
    assert DenseHead(32, 2, DenseHeadOptions(units=8)).eval()(features).shape == (4, 1)
    assert DenseHead(32, 3, DenseHeadOptions(units=8)).eval()(features).shape == (4, 3)
    forced = DenseHead(32, 2, DenseHeadOptions(units=8, output="softmax"))
    assert forced.num_outputs == 2 and forced.eval()(features).shape == (4, 2)
    # Already pooled features go straight to the hidden layer.
    assert DenseHead(32, 2, DenseHeadOptions(units=8)).eval()(torch.randn(4, 32)).shape == (4, 1)


def test_parameter_count_matches_the_keras_head_on_resnet101v2():
    head = DenseHead(2048, 2, DenseHeadOptions())
    trainable = sum(p.numel() for p in head.parameters())
    # Keras: Dense(1024) 2,098,176 + BatchNorm gamma/beta 2,048 (+ 2,048 moving stats) + Dense(1) 1,025.
    assert trainable == 2_098_176 + 2_048 + 1_025
    assert head.norm.running_mean.numel() + head.norm.running_var.numel() == 2_048
    assert isinstance(head, Head)


def test_keras_initialisation_and_batchnorm_settings():
    head = DenseHead(64, 2, DenseHeadOptions(units=32))
    for layer in (head.hidden, head.output):
        fan_out, fan_in = layer.weight.shape
        assert layer.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        assert torch.count_nonzero(layer.bias) == 0
    assert head.norm.eps == pytest.approx(1e-3)
    assert head.norm.momentum == pytest.approx(0.01)  # Keras momentum 0.99
    assert head.dropout.p == 0.5


def test_penalty_is_keras_l2_on_the_hidden_kernel_only():
    head = DenseHead(16, 2, DenseHeadOptions(units=8, l2=0.01))
    expected = 0.01 * head.hidden.weight.detach().square().sum()
    penalty = head.penalty()
    assert torch.allclose(penalty, expected)
    penalty.backward()
    assert torch.allclose(head.hidden.weight.grad, 0.02 * head.hidden.weight.detach())
    assert head.output.weight.grad is None
    assert float(DenseHead(16, 2, DenseHeadOptions(units=8, l2=0.0)).penalty()) == 0.0


def test_dropout_only_while_training():
    torch.manual_seed(0)
    head = DenseHead(16, 3, DenseHeadOptions(units=64))
    features = torch.randn(8, 16)
    head.eval()
    assert torch.equal(head(features), head(features))
    head.train()
    assert not torch.equal(head(features), head(features))


def test_registered_through_the_plugin_entry_point(monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "dense_head")
    registry = build_registry()
    component = registry.get(Kind.HEAD, "dense")
    assert component is not None and component.options is DenseHeadOptions
    head = component.factory(DenseHeadOptions(units=4), None, 10, 2)
    assert head.num_outputs == 1
    with pytest.raises(ValidationError):
        DenseHeadOptions.model_validate({"unit": 4})
    with pytest.raises(ValidationError):
        DenseHeadOptions.model_validate({"dropout": 1.5})


def test_every_option_is_documented():
    text = (REPO / "docs" / "training.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for name in DenseHeadOptions.model_fields:
        assert any(re.search(rf"\b{name}\b", span) for span in spans), f"docs/training.md lacks {name}"
