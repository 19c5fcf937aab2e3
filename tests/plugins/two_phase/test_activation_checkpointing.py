"""Activation checkpointing of phase 2's trainable segments on a tiny ResNetV2: the same gradients and
BatchNorm statistics as without it (fp32), less saved for the backward, the trainer's "on" / "auto"
settings and the peak estimate behind "auto"."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ctframe_resnet_v2.model import ARCHITECTURES, Architecture
from ctframe_two_phase.activation_checkpointing import (
    checkpointed,
    estimate_peak,
    saved_bytes,
    trainable_segments,
)
from ctframe_two_phase.loops import ImageSource, set_train_mode

from ctframe.runtime.model import set_trainable_layers
from tests.plugins.two_phase import test_trainer_toys as toys
from tests.plugins.two_phase.test_trainer_prefix_cache import ARCH, PHASES, make_model, make_splits
from tests.plugins.two_phase.test_trainer_toys import fit, make_context, make_trainer, random_flip
from tests.tolerances import FP32_FOLDED_RTOL


@pytest.fixture(autouse=True)
def tiny_resnet(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, ARCH, Architecture((2, 2, 2, 2), 0, filters=(4, 8, 8, 8)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _phase_2_model():
    model = make_model()
    set_trainable_layers(model.backbone, 20)  # the last block and a half train, as in the prefix tests
    set_train_mode(model, backbone_frozen=False, update_batchnorm=True)
    return model


def _step(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward and backward in training mode: the gradients, then the BatchNorm statistics."""
    model.zero_grad(set_to_none=True)
    logits = model(images)
    (logits - torch.arange(len(images)).view(-1, 1)).square().sum().backward()  # any loss will do
    grads = {f"grad:{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads | {f"buffer:{n}": b.clone() for n, b in model.named_buffers()}


def test_checkpointing_leaves_gradients_and_batchnorm_statistics_as_they_were() -> None:
    images = torch.randint(
        0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    plain = _step(_phase_2_model(), images)
    model = _phase_2_model()
    modules = trainable_segments(model.backbone)
    assert len(modules) == 2  # conv5_block1 and conv5_block2 (post_bn is no segment of its own)
    with checkpointed(modules) as count:
        assert count == len(modules)
        recomputed = _step(model, images)
    assert "forward" not in modules[0].__dict__  # the wrapper is gone after the block
    assert recomputed.keys() == plain.keys() and any(key.startswith("grad:backbone") for key in plain)
    for key, value in plain.items():
        # running statistics updated once, as without checkpointing (twice would move them further)
        torch.testing.assert_close(recomputed[key], value, rtol=FP32_FOLDED_RTOL, atol=1e-7, msg=key)


def test_checkpointed_segments_save_less_for_the_backward() -> None:
    model = _phase_2_model()
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    plain = saved_bytes(model, images, "fp32", "cpu", skip)
    with checkpointed(trainable_segments(model.backbone)):
        kept = saved_bytes(model, images, "fp32", "cpu", skip)
    assert 0 < kept < 0.7 * plain  # the two blocks keep only their inputs (the head still saves its own)


def test_the_estimate_extrapolates_saved_activations_to_the_batch_size() -> None:
    model = _phase_2_model()
    source = ImageSource(make_splits().train, "cpu")
    estimate = estimate_peak(model, model, source, 16, "fp32", "cpu")
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    inputs, _, _ = next(iter(source.batches([list(range(16))], 0)))
    assert estimate.activations == pytest.approx(saved_bytes(model, inputs, "fp32", "cpu", skip), rel=0.05)
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    assert estimate.gradients == estimate.optimizer == trainable
    assert estimate.resident > 0 and estimate.total > estimate.resident


def _losses(trained) -> np.ndarray:
    (finetuned,) = [model for model in trained if model.key == "finetuned"]
    return np.array([(r["train_loss"], r["val_loss"]) for r in finetuned.history])


@pytest.mark.parametrize("augment", [None, random_flip], ids=["prefix-cache", "whole-model"])
def test_training_with_checkpointing_matches_training_without(tmp_path, caplog, augment) -> None:
    def train(name: str, setting: str):
        trainer = make_trainer(**PHASES, activation_checkpointing=setting)
        return fit(trainer, make_model(), make_splits(augment), make_context(tmp_path / name))

    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        on = train("on", "on")
    assert "finetuned: activation checkpointing of 2 trainable backbone segments" in caplog.text
    off = train("off", "off")
    np.testing.assert_allclose(_losses(on), _losses(off), rtol=FP32_FOLDED_RTOL)
    for name, tensor in off[-1].state_dict.items():
        torch.testing.assert_close(
            on[-1].state_dict[name], tensor, rtol=FP32_FOLDED_RTOL, atol=1e-5, msg=name
        )


def test_auto_checkpoints_only_over_the_memory_limit(tmp_path, caplog) -> None:
    def train(name: str, **options) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ctframe.test"):
            trainer = make_trainer(
                initial={"epochs": 1}, finetuned={"epochs": 1, "unfreeze_last": 20}, **options
            )
            fit(trainer, make_model(), make_splits(random_flip), make_context(tmp_path / name))
        return caplog.text

    assert make_trainer().options.activation_checkpointing == "auto"
    unlimited = train("unlimited")
    assert "estimated step peak" not in unlimited and "activation checkpointing" not in unlimited
    roomy = train("roomy", memory_limit_gb=1e6)
    assert "within memory_limit_gb = 1000000.0" in roomy and "activation checkpointing" not in roomy
    tight = train("tight", memory_limit_gb=0.001)
    assert "over memory_limit_gb = 0.001" in tight and "activation checkpointing of 2" in tight


def test_a_backbone_without_segments_trains_unchecked_and_says_so(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        trainer = make_trainer(finetuned={"epochs": 1}, activation_checkpointing="on")
        fit(trainer, toys.make_model(), toys.make_splits(), make_context(tmp_path))
    assert "finetuned: activation checkpointing needs a backbone with segments()" in caplog.text
    assert "activation checkpointing of" not in caplog.text
