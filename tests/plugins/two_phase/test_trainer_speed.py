"""The two-phase trainer's speed settings on the toy backbone: memory format, BatchNorm folding,
torch.compile and the augmentation bank. Every numeric check is fp32 (make_trainer's default)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ctframe_two_phase import trainer as trainer_module
from ctframe_two_phase.bank import AUTO_VIEWS, BankSource, bank_views, build_bank
from ctframe_two_phase.checkpoints import fingerprint
from ctframe_two_phase.loops import ImageSource, epoch_batches
from ctframe_two_phase.options import TwoPhaseOptions

from ctframe.runtime.performance import resolve_channels_last
from ctframe.storage.checkpoints import load_checkpoint
from tests.plugins.two_phase.test_trainer_toys import (
    ToyImages,
    fit,
    make_context,
    make_model,
    make_splits,
    make_trainer,
    random_flip,
)
from tests.tolerances import FP32_FOLDED_RTOL

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _losses(trained) -> np.ndarray:
    return np.array([(r["train_loss"], r["val_loss"]) for model in trained for r in model.history])


def _flip(image: torch.Tensor) -> torch.Tensor:
    return image.flip(-1)  # an augmentation without randomness: every view is the same


def test_memory_format_follows_the_devices_rule_by_default(tmp_path) -> None:
    assert TwoPhaseOptions().channels_last == "auto"
    model = make_model()
    trainer = make_trainer(initial={"epochs": 1}, finetuned={"epochs": 0})
    fit(trainer, model, make_splits(), make_context(tmp_path))
    expected = resolve_channels_last("auto", "cpu")
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last) is expected


def test_folding_frozen_batchnorm_changes_only_rounding(tmp_path, caplog) -> None:
    start = {name: tensor.clone() for name, tensor in make_model().state_dict().items()}
    data = make_splits(augment=random_flip)
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        folded = fit(make_trainer(), make_model(), data, make_context(tmp_path / "f"))
    plain = fit(make_trainer(fold_batchnorm=False), make_model(), data, make_context(tmp_path))
    np.testing.assert_allclose(_losses(folded), _losses(plain), rtol=FP32_FOLDED_RTOL)
    # phase 1: the whole toy backbone (2 pairs); phase 2 trains conv2/bn2, so conv1/bn1 fold
    assert "initial: 2 frozen BatchNorm layers folded" in caplog.text
    assert "finetuned: 1 frozen BatchNorm layers folded" in caplog.text
    saved = load_checkpoint(tmp_path / "f" / "checkpoints" / "finetuned_best.pt")
    for name in ("backbone.conv1.weight", "backbone.conv1.bias", "backbone.bn1.running_var"):
        assert torch.equal(folded[-1].state_dict[name], start[name])  # frozen, and returned unfolded
    # the checkpoint names conv1/bn1 as frozen and hashes their unfolded values
    frozen = saved["frozen"]["keys"]
    assert "backbone.conv1.weight" in frozen and "backbone.conv1.weight" not in saved["model"]
    assert fingerprint(start, frozen) == saved["frozen"]["sha256"]


def test_compile_wraps_the_training_forward(tmp_path, monkeypatch) -> None:
    compiled, real_compile = [], torch.compile

    def spy(function, **options):
        compiled.append(options)
        return real_compile(function, **options)

    monkeypatch.setattr(trainer_module, "COMPILE_OPTIONS", {"backend": "eager"})  # no code generation
    monkeypatch.setattr(trainer_module.torch, "compile", spy)
    phases = {"initial": {"epochs": 2}, "finetuned": {"epochs": 1}}
    trainer = make_trainer(compile=True, **phases)
    with_compile = fit(trainer, make_model(), make_splits(), make_context(tmp_path))
    monkeypatch.undo()
    without = fit(make_trainer(**phases), make_model(), make_splits(), make_context(tmp_path / "plain"))
    assert compiled == [{"backend": "eager"}] * 2  # one forward per phase
    np.testing.assert_allclose(_losses(with_compile), _losses(without), rtol=FP32_FOLDED_RTOL)


def test_a_bank_of_one_view_trains_as_augmenting_every_epoch(tmp_path, caplog) -> None:
    """With a deterministic augmentation every epoch sees the one view: cached == uncached."""
    phases = {"initial": {"epochs": 3}, "finetuned": {"epochs": 0}}
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        trainer = make_trainer(augmentation_bank=1, **phases)
        banked = fit(trainer, make_model(), make_splits(_flip), make_context(tmp_path))
    live = fit(make_trainer(**phases), make_model(), make_splits(_flip), make_context(tmp_path / "live"))
    assert "augmentation bank of 1 views x 32 train images" in caplog.text
    np.testing.assert_allclose(_losses(banked), _losses(live), rtol=FP32_FOLDED_RTOL)


def test_bank_views_are_seeded_and_each_epoch_draws_one_per_image() -> None:
    backbone = make_model().backbone.eval()
    images = ImageSource(ToyImages(16, seed=4), "cpu", 0, random_flip)
    first, _ = build_bank(backbone, images, 3, 8, "fp32", lambda k: 100 + k)
    again, _ = build_bank(backbone, images, 3, 8, "fp32", lambda k: 100 + k)
    assert torch.equal(first.features, again.features)  # a resumed run rebuilds the same bank
    assert not torch.equal(first.features[0], first.features[1])  # the views differ
    order = epoch_batches(16, 5, None)

    def drawn(seed: int) -> torch.Tensor:
        return torch.cat([features for features, _, _ in first.batches(order, seed)])

    assert torch.equal(drawn(7), drawn(7)) and not torch.equal(drawn(7), drawn(8))
    views = first.features.transpose(0, 1)  # (image, view, ...)
    assert all(any(torch.equal(row, view) for view in views[i]) for i, row in enumerate(drawn(7)))


def test_resuming_a_banked_phase_continues_exactly(tmp_path) -> None:
    def run(folder, epochs: int, resume: bool = False):
        trainer = make_trainer(augmentation_bank=3, initial={"epochs": epochs}, finetuned={"epochs": 0})
        return fit(trainer, make_model(), make_splits(random_flip), make_context(folder, resume=resume))

    whole = run(tmp_path / "whole", 4)
    run(tmp_path / "cut", 2)
    resumed = run(tmp_path / "cut", 4, resume=True)
    assert np.array_equal(_losses(resumed), _losses(whole))
    assert all(torch.equal(resumed[0].state_dict[k], v) for k, v in whole[0].state_dict.items())


def test_bank_setting() -> None:
    assert bank_views("off", 100) == 0 and bank_views(5, 1) == 5
    assert bank_views("auto", 3 * AUTO_VIEWS - 1) == 0 and bank_views("auto", 3 * AUTO_VIEWS) == AUTO_VIEWS
    with pytest.raises(ValueError, match="at least 1 view"):
        TwoPhaseOptions.model_validate({"augmentation_bank": 0})
    assert isinstance(BankSource(torch.zeros(2, 3, 4), torch.zeros(3), ["a", "b", "c"]).nbytes, int)
