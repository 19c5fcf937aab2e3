"""Phase 2's prefix bank on a tiny ResNetV2: one view per image and epoch drawn from the epoch's seed,
a one-view bank of an identity augmentation trains as the prefix cache does, the on-disk bank and its
clean-up, exact resume, and the option's checks. Numeric checks are fp32 training."""

from __future__ import annotations

import logging

import numpy as np
import pydantic
import pytest
import torch
from ctframe_resnet_v2.model import ARCHITECTURES, Architecture
from ctframe_two_phase.prefix_bank import PrefixBankSource

from tests.plugins.two_phase.test_trainer_prefix_cache import ARCH, make_model, make_splits
from tests.plugins.two_phase.test_trainer_toys import fit, make_context, make_trainer, random_flip
from tests.tolerances import FP32_FOLDED_RTOL

PHASES = {"initial": {"epochs": 1}, "finetuned": {"epochs": 3, "unfreeze_last": 20}}


@pytest.fixture(autouse=True)
def tiny_resnet(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, ARCH, Architecture((2, 2, 2, 2), 0, filters=(4, 8, 8, 8)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _finetuned(trained) -> np.ndarray:
    (finetuned,) = [model for model in trained if model.key == "finetuned"]
    return np.array([(r["train_loss"], r["val_loss"], r["val_accuracy"]) for r in finetuned.history])


def _bank(views: int = 3, images: int = 5) -> PrefixBankSource:
    """``activations[k, i]`` filled with ``100 k + i``, so each batch tells which view it drew."""
    values = 100 * torch.arange(views).view(-1, 1) + torch.arange(images).view(1, -1)
    activations = values.view(views, images, 1, 1, 1).expand(views, images, 2, 1, 1).float().contiguous()
    labels = torch.arange(images) % 2
    return PrefixBankSource(
        activations, labels, [f"s{i}" for i in range(images)], "cpu", torch.float32, False
    )


def test_each_epoch_draws_one_view_per_image_from_its_seed() -> None:
    bank = _bank()
    order = [[4, 0], [2, 1, 3]]

    def drawn(seed: int) -> dict[int, int]:
        views = {}
        for inputs, labels, ids in bank.batches(order, seed):
            for value, label, sample_id in zip(
                inputs[:, 0, 0, 0].tolist(), labels.tolist(), ids, strict=True
            ):
                image = int(sample_id[1:])
                assert int(value) % 100 == image and label == image % 2  # the image's own activations
                views[image] = int(value) // 100
        return views

    assert drawn(5) == drawn(5)  # the epoch's seed decides: a resumed epoch draws the same views
    draws = [drawn(seed) for seed in range(8)]
    assert {tuple(d.values()) for d in draws} != {tuple(draws[0].values())}  # epochs differ
    assert {view for d in draws for view in d.values()} == {0, 1, 2}  # every view gets drawn


def test_a_one_view_bank_of_an_identity_augmentation_trains_as_the_prefix_cache(tmp_path, caplog) -> None:
    def unchanged(image: torch.Tensor) -> torch.Tensor:
        return image

    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        banked = fit(
            make_trainer(**PHASES, prefix_bank=1),
            make_model(),
            make_splits(unchanged),
            make_context(tmp_path / "bank"),
        )
    assert (
        "finetuned: prefix bank (up to conv4_block2_out; 3 segments train) of 1 views x 32 train"
        in caplog.text
    )
    cached = fit(make_trainer(**PHASES), make_model(), make_splits(), make_context(tmp_path / "cache"))
    np.testing.assert_allclose(_finetuned(banked), _finetuned(cached), rtol=FP32_FOLDED_RTOL)


def test_a_bank_on_disk_differs_from_live_augmentation_and_is_deleted(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        banked = fit(
            make_trainer(**PHASES, prefix_bank=2, prefix_cache="disk"),
            make_model(),
            make_splits(random_flip),
            make_context(tmp_path / "bank"),
        )
    assert "of 2 views x 32 train images and 16 val images: 32x2x2 float32" in caplog.text
    assert f"in {tmp_path / 'bank' / 'cache'}" in caplog.text
    assert not (tmp_path / "bank" / "cache").exists()  # the bank, the val cache and their folder
    live = fit(
        make_trainer(**PHASES), make_model(), make_splits(random_flip), make_context(tmp_path / "live")
    )
    assert not np.array_equal(_finetuned(banked)[:, 0], _finetuned(live)[:, 0])  # other augmentations


def test_prefix_cache_off_turns_the_bank_off(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        trainer = make_trainer(**PHASES, prefix_bank=2, prefix_cache="off")
        fit(trainer, make_model(), make_splits(random_flip), make_context(tmp_path / "off"))
    assert "prefix bank" not in caplog.text


def test_resuming_a_banked_phase_2_continues_exactly(tmp_path) -> None:
    def run(folder, epochs: int, resume: bool = False):
        phases = {"initial": {"epochs": 1}, "finetuned": {"epochs": epochs, "unfreeze_last": 20}}
        trainer = make_trainer(prefix_bank=2, **phases)
        return fit(trainer, make_model(), make_splits(random_flip), make_context(folder, resume=resume))

    whole = run(tmp_path / "whole", 3)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 3, resume=True)  # the bank is rebuilt: the same views, the same draws
    np.testing.assert_array_equal(_finetuned(resumed), _finetuned(whole))
    for name, tensor in whole[-1].state_dict.items():
        assert torch.equal(resumed[-1].state_dict[name], tensor), name


@pytest.mark.parametrize("value", [0, True, "many"])
def test_the_option_takes_a_positive_number_of_views_or_off(value) -> None:
    assert make_trainer().options.prefix_bank == "off"
    assert make_trainer(prefix_bank="4").options.prefix_bank == 4  # --set passes text
    with pytest.raises(pydantic.ValidationError, match="prefix_bank"):
        make_trainer(prefix_bank=value)
