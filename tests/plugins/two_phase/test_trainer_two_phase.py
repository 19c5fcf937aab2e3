"""The two-phase trainer on a toy backbone: freezing, early stopping, the feature cache,
artifacts, reproducibility and Ctrl-C."""

from __future__ import annotations

import importlib.util
import logging
import re
import struct

import numpy as np
import pytest
import torch
from ctframe_two_phase import checkpoints
from ctframe_two_phase.early_stopping import EarlyStopping
from ctframe_two_phase.optimizer import KerasRMSprop
from ctframe_two_phase.options import FinetuneOptions, TwoPhaseOptions
from ctframe_two_phase.phase import PhaseState

from ctframe import DataError, Kind, RunError
from ctframe.api.training import set_trainable_layers
from ctframe.registry.plugins import build_registry
from ctframe.runtime.precision import resolve
from ctframe.storage.checkpoints import load_checkpoint
from tests.conftest import REPO
from tests.plugins.two_phase.test_trainer_toys import (
    ToyImages,
    fit,
    make_context,
    make_model,
    make_splits,
    make_trainer,
    predict,
    random_flip,
)
from tests.tolerances import BF16_PROBABILITY_ATOL

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _changed(before: dict, after: dict, prefix: str) -> set[str]:
    return {
        name
        for name, tensor in after.items()
        if name.startswith(prefix) and not torch.equal(tensor.float(), before[name].float())
    }


@pytest.mark.parametrize("finetune_batchnorm", [True, False])
def test_phase_one_trains_the_head_phase_two_the_last_layers(tmp_path, finetune_batchnorm):
    model = make_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(
        initial={"epochs": 2}, finetuned={"epochs": 2, "finetune_batchnorm": finetune_batchnorm}
    )
    trained = fit(trainer, model, make_splits(), make_context(tmp_path))
    initial, finetuned = (entry.state_dict for entry in trained)  # what the engine evaluates

    assert _changed(start, initial, "backbone.") == set()  # weights and BatchNorm statistics
    assert {"head.hidden.weight", "head.output.weight", "head.norm.running_mean"} <= _changed(
        start, initial, "head."
    )
    # unfreeze_last = 3 -> conv2, bn2, relu2 of the toy's seven layers.
    changed = _changed(initial, finetuned, "backbone.")
    assert {"backbone.conv2.weight", "backbone.bn2.weight", "backbone.bn2.bias"} <= changed
    assert not any(name.startswith(("backbone.conv1", "backbone.bn1")) for name in changed)
    assert ("backbone.bn2.running_mean" in changed) == finetune_batchnorm
    assert "head.hidden.weight" in _changed(initial, finetuned, "head.")


def test_checkpoints_leave_out_what_their_phase_cannot_change(tmp_path):
    """Phase 1's checkpoints hold the head only (the frozen backbone is named and hashed); phase 2's
    leave out the frozen layers; a resume into a model whose frozen weights differ is refused."""
    model = make_model()
    trainer = make_trainer(initial={"epochs": 2}, finetuned={"epochs": 1})
    fit(trainer, model, make_splits(), make_context(tmp_path))
    backbone = {name for name in model.state_dict() if name.startswith("backbone.")}
    for name in ("initial_best.pt", "initial_last.pt"):
        saved = load_checkpoint(tmp_path / "checkpoints" / name)
        assert not backbone & set(saved["model"]) and set(saved["frozen"]["keys"]) == backbone, name
    saved = load_checkpoint(tmp_path / "checkpoints" / "finetuned_last.pt")
    assert {key.split(".")[1] for key in saved["frozen"]["keys"]} == {"conv1", "bn1"}
    assert "backbone.conv2.weight" in saved["model"]

    checkpoints.restore(make_model(), saved, "finetuned_last.pt")  # the same starting weights: accepted
    other = make_model(seed=1)
    with pytest.raises(RunError, match="leaves out 7 frozen tensors of its phase, and this model's differ"):
        checkpoints.restore(other, saved, "finetuned_last.pt")


def test_the_resume_point_is_one_phase_state_written_and_read_back(tmp_path):
    """``_last.pt`` holds the pinned keys (format 2 added ``optimizer_name``; format 1 files still load,
    see test_optimizers.py), and
    ``PhaseState.from_checkpoint`` gives back the weights, optimiser, early stopping, history, epoch
    and RNG state that ``to_checkpoint`` wrote."""
    trainer = make_trainer(initial={"epochs": 2}, finetuned={"epochs": 0})
    fit(trainer, make_model(), make_splits(), make_context(tmp_path))
    path = tmp_path / "checkpoints" / "initial_last.pt"
    saved = checkpoints.load(path)
    assert set(saved) == {*checkpoints.LAST_KEYS, "frozen"} and (saved["format"], saved["epoch"]) == (2, 1)

    model = make_model()  # the backbone as built: the checkpoint leaves it out as frozen
    set_trainable_layers(model.backbone, 0)  # phase 1's frozen part, as the trainer sets it
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.add_(1.0)  # weights the checkpoint's must replace
    optimizer = KerasRMSprop(list(model.head.parameters()), lr=1.0)
    torch.manual_seed(123)  # an RNG state the resume must replace
    state = PhaseState.from_checkpoint(
        saved, path, model=model, optimizer=optimizer, stopper=EarlyStopping(patience=5)
    )
    assert (state.phase, state.epoch, [r["epoch"] for r in state.history]) == ("initial", 1, [1, 2])
    assert not state.finished(epochs=3) and state.finished(epochs=2)
    again = state.to_checkpoint()
    assert torch.equal(again["rng"]["torch"], saved["rng"]["torch"])
    for key in ("format", "phase", "epoch", "frozen", "early_stopping", "history", "optimizer_name"):
        assert again[key] == saved[key], key
    assert again["model"].keys() == saved["model"].keys()
    assert all(torch.equal(again["model"][name], tensor) for name, tensor in saved["model"].items())
    assert again["optimizer"]["param_groups"] == saved["optimizer"]["param_groups"]


def test_early_stopping_rules():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert stopper.update(1.0, 0)
    assert not stopper.update(0.95, 1)  # improvement smaller than min_delta
    assert stopper.update(0.85, 2)
    assert not stopper.update(0.9, 3) and not stopper.stopped
    assert not stopper.update(0.86, 4) and stopper.stopped
    assert (stopper.best, stopper.best_epoch) == (0.85, 2)
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert restored.stopped and restored.best == 0.85


def test_trainer_stops_early_and_evaluates_the_best_epoch(tmp_path):
    # min_delta so large that only the first epoch counts as an improvement.
    trainer = make_trainer(initial={"epochs": 20, "patience": 2, "min_delta": 1e6}, finetuned={"epochs": 0})
    model = make_model()
    (result,) = fit(trainer, model, make_splits(), make_context(tmp_path))
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    best = load_checkpoint(tmp_path / "checkpoints" / "initial_best.pt")
    last = load_checkpoint(tmp_path / "checkpoints" / "initial_last.pt")
    assert (best["epoch"], last["epoch"]) == (0, 2)
    # the returned weights are the best epoch's, not the last one's (fp32 training)
    for name, tensor in best["model"].items():
        assert torch.equal(result.state_dict[name], tensor), name
    assert any(not torch.equal(last["model"][n], t) for n, t in best["model"].items())


def test_feature_cache_gives_the_uncached_losses(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ctframe.test")
    runs = {}
    for mode in ("auto", "off"):
        trainer = make_trainer(initial={"epochs": 3}, finetuned={"epochs": 0}, feature_cache=mode)
        runs[mode] = fit(trainer, make_model(), make_splits(), make_context(tmp_path / mode))[0]
    assert sum("cached frozen-backbone features" in r.message for r in caplog.records) == 1
    for column in ("train_loss", "val_loss"):
        cached = [record[column] for record in runs["auto"].history]
        uncached = [record[column] for record in runs["off"].history]
        assert len(cached) == 3
        np.testing.assert_allclose(cached, uncached, rtol=0, atol=1e-5)
    test = make_splits().test
    cached, uncached = (predict(runs[mode].state_dict, test).probabilities for mode in ("auto", "off"))
    np.testing.assert_allclose(cached, uncached, atol=1e-5)  # fp32 training and prediction


def _read_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """Decode a TensorBoard event file (TFRecord framing around Event protos)."""
    from tensorboard.compat.proto import event_pb2

    data, position, scalars = path.read_bytes(), 0, {}
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position : position + 8])
        event = event_pb2.Event.FromString(data[position + 12 : position + 12 + length])
        position += 12 + length + 4
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_artifacts_and_predictions(tmp_path):
    data = make_splits()
    results = fit(make_trainer(tensorboard=True), make_model(), data, make_context(tmp_path))
    titles = [(r.key, r.title) for r in results]
    assert titles == [("initial", "Initial Model"), ("finetuned", "Fine-Tuned Model")]
    for result in results:
        assert set(result.state_dict) == set(make_model().state_dict())
        test = predict(result.state_dict, data.test)
        assert test.sample_ids == tuple(data.test.ids)
        np.testing.assert_array_equal(test.labels, data.test.labels)
        assert test.probabilities.shape == (16, 2)
        np.testing.assert_allclose(test.probabilities.sum(axis=1), 1.0, atol=1e-6)
        assert {"epoch", "train_loss", "val_loss", "val_accuracy", "images_per_s", "seconds"} <= set(
            result.history[0]
        )
        assert all(record["images_per_s"] > 0 for record in result.history)
        last = load_checkpoint(tmp_path / "checkpoints" / f"{result.key}_last.pt")
        assert {"model", "optimizer", "rng", "early_stopping", "history", "epoch", "phase"} <= set(last)
        events = list((tmp_path / "tensorboard" / result.key).glob("events.out.tfevents.*"))
        if importlib.util.find_spec("tensorboard") is None:  # optional extra: then no event files
            assert events == []
            continue
        scalars = _read_scalars(events[0])
        steps, values = zip(*scalars["val_loss"], strict=True)
        assert list(steps) == list(range(len(result.history)))
        assert list(values) == pytest.approx([record["val_loss"] for record in result.history], rel=1e-6)
    assert float(results[0].history[0]["lr"]) == 1e-2 and float(results[1].history[0]["lr"]) == 1e-3


def test_augmented_training_is_reproducible_with_loader_workers(tmp_path):
    def run(folder: str):
        trainer = make_trainer(initial={"epochs": 2}, finetuned={"epochs": 1}, num_workers=1)
        return fit(trainer, make_model(), make_splits(augment=random_flip), make_context(tmp_path / folder))

    first, second = run("a"), run("b")
    for one, two in zip(first, second, strict=True):
        assert [r["train_loss"] for r in one.history] == [r["train_loss"] for r in two.history]
        for name, tensor in one.state_dict.items():
            assert torch.equal(two.state_dict[name], tensor), name


def test_zero_epochs_skips_a_phase(tmp_path):
    results = fit(make_trainer(finetuned={"epochs": 0}), make_model(), make_splits(), make_context(tmp_path))
    assert [r.key for r in results] == ["initial"]
    assert not (tmp_path / "checkpoints" / "finetuned_last.pt").exists()


def test_empty_validation_split_is_a_data_error(tmp_path):
    data = make_splits(val=0)
    with pytest.raises(DataError, match="val split is empty"):
        fit(make_trainer(), make_model(), data, make_context(tmp_path))


def _without_timing(history) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in ("images_per_s", "seconds")} for record in history]


class _InterruptedImages(ToyImages):
    """Raises KeyboardInterrupt (as Ctrl-C would) after ``limit`` item reads."""

    def __init__(self, limit: int):
        super().__init__(32, 1, prefix="train")
        self.reads, self.limit = 0, limit

    def __getitem__(self, index: int):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt
        return super().__getitem__(index)


def test_ctrl_c_keeps_completed_epochs_and_resume_finishes_the_same(tmp_path):
    def trainer():
        return make_trainer(initial={"epochs": 3}, finetuned={"epochs": 2})

    reference = fit(trainer(), make_model(), make_splits(augment=random_flip), make_context(tmp_path / "ref"))

    data = make_splits(augment=random_flip)
    # Phase 1 reads 3 x 32 training items; stop in the middle of phase 2's second epoch.
    interrupted = type(data)(**{**data.__dict__, "train": _InterruptedImages(limit=3 * 32 + 32 + 10)})
    with pytest.raises(KeyboardInterrupt):
        fit(trainer(), make_model(), interrupted, make_context(tmp_path / "run"))
    saved = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(saved / "initial_last.pt")["epoch"] == 2
    assert load_checkpoint(saved / "finetuned_last.pt")["epoch"] == 0

    resumed = fit(trainer(), make_model(), data, make_context(tmp_path / "run", resume=True))
    for one, two in zip(reference, resumed, strict=True):
        assert _without_timing(one.history) == _without_timing(two.history)
        for name, tensor in one.state_dict.items():
            assert torch.equal(two.state_dict[name], tensor), name


def test_registered_with_nested_phase_options(monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "two_phase")
    component = build_registry().get(Kind.TRAINER, "two_phase")
    assert component is not None and component.options is TwoPhaseOptions
    options = TwoPhaseOptions.model_validate({"initial": {"epochs": 4}, "finetuned": {"unfreeze_last": 10}})
    assert (options.initial.lr, options.finetuned.lr) == (1e-4, 1e-5)
    assert (options.finetuned.epochs, options.finetuned.unfreeze_last) == (20, 10)
    with pytest.raises(ValueError):
        TwoPhaseOptions.model_validate({"initial": {"epoch": 4}})


def test_every_option_is_documented():
    text = (REPO / "docs" / "training.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for schema in (TwoPhaseOptions, FinetuneOptions):
        for name in schema.model_fields:
            assert any(re.search(rf"\b{name}\b", span) for span in spans), f"docs/training.md lacks {name}"


@pytest.mark.parametrize("requested", ["auto", "bf16"])
def test_training_precision_is_what_the_setting_resolves_to(tmp_path, requested):
    """``auto`` is fp32 or bf16 by machine (or $CTFRAME_NATIVE_BF16); either way the model trains, and
    bf16 differs from fp32 only within bf16's tolerance."""
    resolved = resolve(requested, "cpu").resolved
    runs = {}
    for precision in (requested, "fp32"):
        trainer = make_trainer(initial={"epochs": 2}, finetuned={"epochs": 1}, precision=precision)
        runs[precision] = fit(trainer, make_model(), make_splits(), make_context(tmp_path / precision))
    test = make_splits().test
    got = predict(runs[requested][-1].state_dict, test).probabilities  # predictions in fp32
    reference = predict(runs["fp32"][-1].state_dict, test).probabilities
    if resolved == "fp32":
        np.testing.assert_array_equal(got, reference)
    else:
        np.testing.assert_allclose(got, reference, atol=BF16_PROBABILITY_ATOL)
        assert not np.array_equal(got, reference)  # bf16 really ran
