"""Phase 2's prefix-activation cache on a tiny ResNetV2: where it cuts, that cached and uncached
training agree, the bf16 store, the on-disk store and its clean-up, exact resume, and when it stays
off. Numeric checks are fp32 training (make_trainer's default); the bf16 store is fp32 training on
bf16-rounded activations."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_resnet_v2.model import ARCHITECTURES, Architecture, ResNetV2
from ctframe_two_phase.prefix import frozen_prefix

from ctframe import DataSplits
from ctframe.runtime.model import Classifier, set_trainable_layers
from tests.plugins.two_phase.test_trainer_toys import (
    CLASSES,
    ToyImages,
    fit,
    make_context,
    make_trainer,
    random_flip,
)
from tests.tolerances import BF16_STORE_RTOL, FP32_FOLDED_RTOL

ARCH = "tinyv2_prefix"
PHASES = {"initial": {"epochs": 1}, "finetuned": {"epochs": 3, "unfreeze_last": 20}}


@pytest.fixture(autouse=True)
def tiny_resnet(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, ARCH, Architecture((2, 2, 2, 2), 0, filters=(4, 8, 8, 8)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and faster on the shared 2-core box
    yield
    torch.set_num_threads(before)


def make_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    backbone = ResNetV2(ARCH)
    head = DenseHead(backbone.out_features, len(CLASSES), DenseHeadOptions(units=8, bn_momentum=0.5))
    return Classifier(backbone, head, CLASSES)


def make_splits(augment=None) -> DataSplits:
    """64 px toy images: the cached activations (after conv4) are 2x2 maps."""
    return DataSplits(
        class_names=CLASSES,
        positive_class="non-COVID",
        train=ToyImages(32, 1, size=64, prefix="train"),
        val=ToyImages(16, 2, size=64, prefix="val"),
        test=ToyImages(16, 3, size=64, prefix="test"),
        augment=augment,
    )


def _finetuned_losses(trained) -> np.ndarray:
    (finetuned,) = [model for model in trained if model.key == "finetuned"]
    return np.array([(r["train_loss"], r["val_loss"], r["val_accuracy"]) for r in finetuned.history])


def _train(tmp_path, name: str, augment=None, caplog=None, **options):
    trainer = make_trainer(**PHASES, **options)
    return fit(trainer, make_model(), make_splits(augment), make_context(tmp_path / name))


def test_the_cut_rounds_down_to_the_block_that_holds_the_first_unfrozen_layer() -> None:
    backbone = make_model().backbone
    layers = backbone.layers
    set_trainable_layers(backbone, 20)  # 2 top layers + the last block (11) + part of the one before
    cut = frozen_prefix(backbone)
    assert cut is not None
    first_trainable = len(layers) - 20
    suffix_start = cut.suffix[0].start
    assert suffix_start <= first_trainable < cut.suffix[1].start  # the block that holds it
    assert layers[suffix_start].name == "conv5_block1_preact_bn"
    assert cut.last_cached_layer == layers[suffix_start - 1].name == "conv4_block2_out"
    assert not any(p.requires_grad for s in cut.prefix for p in s.module.parameters())

    set_trainable_layers(backbone, 0)
    assert frozen_prefix(backbone) is None  # nothing trains: phase 1's feature cache does this
    set_trainable_layers(backbone, None)
    assert frozen_prefix(backbone) is None  # everything trains: nothing to cache


def test_cached_and_uncached_phase_2_give_the_same_losses(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        cached = _train(tmp_path, "cached", prefix_cache="memory")
    assert "finetuned: cached the frozen prefix (up to conv4_block2_out; 3 segments train)" in caplog.text
    assert "for 32 train and 16 val images: 32x2x2 float32" in caplog.text
    uncached = _train(tmp_path, "uncached", prefix_cache="off")
    np.testing.assert_allclose(_finetuned_losses(cached), _finetuned_losses(uncached), rtol=FP32_FOLDED_RTOL)
    # weights too, BatchNorm statistics of the suffix included; RMSprop divides each gradient by its own
    # running scale, so a rounding difference in a tiny gradient moves a weight by up to ~lr * 1e-3
    for name, tensor in uncached[-1].state_dict.items():
        torch.testing.assert_close(cached[-1].state_dict[name], tensor, rtol=FP32_FOLDED_RTOL, atol=1e-5)


def test_a_bf16_store_on_disk_trains_within_bf16_rounding_and_is_deleted(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        stored = _train(tmp_path, "disk", prefix_cache="disk", prefix_cache_dtype="bf16")
    assert "32x2x2 bfloat16" in caplog.text and f"in {tmp_path / 'disk' / 'cache'}" in caplog.text
    assert not (tmp_path / "disk" / "cache").exists()  # the phase's files and their folder are gone
    uncached = _train(tmp_path, "uncached", prefix_cache="off")
    # losses only: accuracy is a step function of probabilities near 0.5 on this barely trained toy
    losses = slice(0, 2)
    np.testing.assert_allclose(
        _finetuned_losses(stored)[:, losses], _finetuned_losses(uncached)[:, losses], rtol=BF16_STORE_RTOL
    )


def test_auto_caches_without_augmentation_and_never_with_it(tmp_path, caplog) -> None:
    assert make_trainer().options.prefix_cache == "auto"
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        _train(tmp_path, "plain")
    assert "KiB in memory" in caplog.text  # auto keeps a small cache in memory
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        _train(tmp_path, "augmented", augment=random_flip)
    assert "cached the frozen prefix" not in caplog.text  # augmented images differ every epoch
    # validation is never augmented: its frozen parts run once in each phase
    assert "initial: validation features of 16 images, once" in caplog.text
    once = "finetuned: validation through the frozen prefix (up to conv4_block2_out) once: 16 images"
    assert once in caplog.text


def _histories(trained) -> np.ndarray:
    return np.array([(r["train_loss"], r["val_loss"]) for model in trained for r in model.history])


def test_validation_run_once_while_training_augments_gives_the_same_epochs(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ctframe.test"):
        once = _train(tmp_path, "once", augment=random_flip)
    assert "validation features of 16 images, once" in caplog.text
    live = _train(tmp_path, "live", augment=random_flip, feature_cache="off", prefix_cache="off")
    # the training side is the same computation; validation differs by float rounding (folded per part)
    np.testing.assert_allclose(_histories(once), _histories(live), rtol=FP32_FOLDED_RTOL)
    for name, tensor in live[-1].state_dict.items():
        torch.testing.assert_close(once[-1].state_dict[name], tensor, rtol=FP32_FOLDED_RTOL, atol=1e-5)


def test_resuming_a_cached_phase_2_continues_exactly(tmp_path) -> None:
    def run(folder, epochs: int, resume: bool = False):
        phases = {"initial": {"epochs": 1}, "finetuned": {"epochs": epochs, "unfreeze_last": 20}}
        trainer = make_trainer(prefix_cache="disk", **phases)
        return fit(trainer, make_model(), make_splits(), make_context(folder, resume=resume))

    whole = run(tmp_path / "whole", 3)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 3, resume=True)  # the cache is rebuilt from the same weights
    np.testing.assert_array_equal(_finetuned_losses(resumed), _finetuned_losses(whole))
    for name, tensor in whole[-1].state_dict.items():
        assert torch.equal(resumed[-1].state_dict[name], tensor), name
