"""Optimisers, learning-rate schedules, class weights and from-scratch training of the two-phase
trainer, on the toy backbone."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ctframe_two_phase import checkpoints
from ctframe_two_phase.class_weights import class_weights
from ctframe_two_phase.early_stopping import EarlyStopping
from ctframe_two_phase.optimizers import build_optimizer
from ctframe_two_phase.options import PhaseOptions, TwoPhaseOptions
from ctframe_two_phase.phase import PhaseState
from ctframe_two_phase.schedules import learning_rate

from ctframe import RecipeError, RunError
from ctframe.api.training import classification_loss, set_trainable_layers
from ctframe.registry.validation import validate_options
from ctframe.storage.checkpoints import load_checkpoint, save_checkpoint
from tests.plugins.two_phase.test_trainer_toys import (
    ToyImages,
    fit,
    make_context,
    make_model,
    make_splits,
    make_trainer,
    random_flip,
)
from tests.plugins.two_phase.test_trainer_two_phase import _InterruptedImages

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _phase_one(**options) -> dict:
    return {"epochs": 1, "lr": 1e-2, **options}


def _trained(tmp_path: Path, name: str, initial: dict, **options):
    trainer = make_trainer(initial=initial, finetuned={"epochs": 0}, **options)
    return fit(trainer, make_model(), make_splits(), make_context(tmp_path / name))[0]


# --- the schedule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [0.1, 0.55, 1.0, 1.0, 1.0, 1.0]),
        ("step", [0.1, 0.55, 1.0, 1.0, 0.5, 0.5]),  # step_size 2, gamma 0.5, counted after the warm-up
        (
            "cosine",
            [0.1, 0.55, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2],
        ),
    ],
)
def test_learning_rate_per_epoch_is_the_schedule_formula(schedule, expected):
    options = PhaseOptions(epochs=6, lr=1.0, schedule=schedule, warmup_epochs=2, step_size=2, gamma=0.5)
    assert [learning_rate(options, epoch) for epoch in range(6)] == pytest.approx(expected, abs=1e-12)


def test_history_records_the_rate_each_epoch_trained_with(tmp_path):
    initial = _phase_one(epochs=4, lr=0.02, optimizer="sgd", schedule="cosine", warmup_epochs=1, min_lr=0.002)
    history = _trained(tmp_path, "run", initial).history
    phase = PhaseOptions.model_validate(initial)
    assert [record["lr"] for record in history] == [learning_rate(phase, epoch) for epoch in range(4)]
    assert history[0]["lr"] == pytest.approx(0.002) and history[1]["lr"] == pytest.approx(0.02)
    # the optimiser trained with it: the last epoch's rate is what its state holds
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "initial_last.pt")
    assert {group["lr"] for group in saved["optimizer"]["param_groups"]} == {history[-1]["lr"]}


# --- the optimisers, one step on known gradients ---------------------------------------------------


def _one_step(phase: dict, steps: int = 1, **trainer) -> torch.Tensor:
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = build_optimizer([weight], PhaseOptions(lr=0.1, **phase), TwoPhaseOptions(**trainer))
    for _ in range(steps):
        weight.grad = torch.tensor([0.5, 0.25])
        optimizer.step()
    return weight.detach()


def test_adamw_step_is_sign_like_with_decoupled_decay():
    # first Adam step: m / sqrt(v) = g / |g| = 1 for each entry; decay multiplies w by (1 - lr * wd)
    after = _one_step({"optimizer": "adamw", "weight_decay": 0.5})
    expected = torch.tensor([1.0, -2.0]) * (1 - 0.1 * 0.5) - 0.1
    assert torch.allclose(after, expected, atol=1e-6)
    assert not torch.allclose(after, _one_step({"optimizer": "rmsprop"}))  # it is not RMSprop


def test_rmsprop_keeps_keras_semantics():
    # v = (1 - rho) g^2; w -= lr g / sqrt(v + eps)
    grad = torch.tensor([0.5, 0.25])
    expected = torch.tensor([1.0, -2.0]) - 0.1 * grad / torch.sqrt(0.1 * grad**2 + 1e-7)
    assert torch.allclose(_one_step({}), expected, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_l2(nesterov):
    grad, start = torch.tensor([0.5, 0.25]), torch.tensor([1.0, -2.0])
    first = grad + 0.01 * start  # L2 weight decay joins the gradient
    after_one = start - 0.1 * (first + 0.9 * first if nesterov else first)
    second = grad + 0.01 * after_one
    buffer = 0.9 * first + second
    expected = after_one - 0.1 * (second + 0.9 * buffer if nesterov else buffer)
    after = _one_step({"optimizer": "sgd", "weight_decay": 0.01, "nesterov": nesterov}, steps=2)
    assert torch.allclose(after, expected, atol=1e-6)


def test_each_optimizer_trains_the_toy_differently(tmp_path):
    heads = {
        name: _trained(tmp_path, name, _phase_one(optimizer=name, lr=lr)).state_dict["head.output.weight"]
        for name, lr in (("rmsprop", 1e-2), ("adamw", 1e-2), ("sgd", 1e-1))
    }
    start = make_model().state_dict()["head.output.weight"]
    assert all(not torch.equal(weight, start) for weight in heads.values())
    assert not torch.equal(heads["adamw"], heads["rmsprop"]) and not torch.equal(heads["sgd"], heads["adamw"])


def test_sgd_momentum_buffer_is_checkpointed_and_restored(tmp_path):
    _trained(tmp_path, "run", _phase_one(epochs=2, optimizer="sgd", lr=0.1))
    path = tmp_path / "run" / "checkpoints" / "initial_last.pt"
    saved = checkpoints.load(path)
    assert saved["optimizer_name"] == "sgd" and saved["format"] == checkpoints.FORMAT
    buffers = [entry["momentum_buffer"] for entry in saved["optimizer"]["state"].values()]
    assert buffers and all(buffer.abs().sum() > 0 for buffer in buffers)

    model = make_model()
    set_trainable_layers(model.backbone, 0)
    head = list(model.head.parameters())
    optimizer = build_optimizer(head, PhaseOptions(optimizer="sgd"), TwoPhaseOptions())
    state = PhaseState.from_checkpoint(
        saved, path, model=model, optimizer=optimizer, stopper=EarlyStopping(5)
    )
    restored = [state.optimizer.state[p]["momentum_buffer"] for p in head]
    assert all(torch.equal(a, b) for a, b in zip(restored, buffers, strict=True))

    adamw = build_optimizer(head, PhaseOptions(optimizer="adamw"), TwoPhaseOptions())
    with pytest.raises(RunError, match="trained with optimizer = 'sgd' and the recipe now says 'adamw'"):
        PhaseState.from_checkpoint(saved, path, model=make_model(), optimizer=adamw, stopper=EarlyStopping(5))


def test_format_1_resume_points_still_load_as_rmsprop(tmp_path):
    _trained(tmp_path, "run", _phase_one())
    path = tmp_path / "run" / "checkpoints" / "initial_last.pt"
    old = {k: v for k, v in load_checkpoint(path).items() if k != "optimizer_name"} | {"format": 1}
    save_checkpoint(path, old, run_dir=tmp_path / "run")
    assert checkpoints.load(path)["optimizer_name"] == "rmsprop"


def test_resume_mid_phase_is_bit_exact_for_adamw_with_cosine(tmp_path):
    """From scratch (images every epoch), AdamW with warm-up and cosine: interrupted in phase 1's third
    epoch and resumed, the run ends with the same weights and history as one that never stopped."""

    def trainer():
        initial = {"epochs": 4, "optimizer": "adamw", "schedule": "cosine", "warmup_epochs": 1}
        return make_trainer(initial=initial, finetuned={"epochs": 0}, from_scratch=True)

    reference = fit(trainer(), make_model(), make_splits(augment=random_flip), make_context(tmp_path / "ref"))
    data = make_splits(augment=random_flip)
    interrupted = type(data)(**{**data.__dict__, "train": _InterruptedImages(limit=2 * 32 + 10)})
    with pytest.raises(KeyboardInterrupt):
        fit(trainer(), make_model(), interrupted, make_context(tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "initial_last.pt")["epoch"] == 1

    resumed = fit(trainer(), make_model(), data, make_context(tmp_path / "run", resume=True))
    timing = ("images_per_s", "seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed[0].history] == [
        {k: v for k, v in r.items() if k not in timing} for r in reference[0].history
    ]
    for name, tensor in reference[0].state_dict.items():
        assert torch.equal(resumed[0].state_dict[name], tensor), name


# --- class weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("outputs", [1, 2])
def test_class_weights_multiply_each_sample_loss_over_the_batch_size(outputs):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, outputs), torch.tensor([0, 0, 0, 0, 1, 1])
    weights = torch.tensor([0.75, 1.5])
    if outputs == 1:
        each = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), reduction="none")
    else:
        each = F.cross_entropy(logits, labels, reduction="none")
    expected = (each[:4].sum() * 0.75 + each[4:].sum() * 1.5) / 6  # Keras' class_weight, not a weighted mean
    assert torch.allclose(classification_loss(logits, labels, weights), expected)
    assert torch.allclose(classification_loss(logits, labels), each.mean())


def test_balanced_and_named_class_weights():
    data = make_splits(train=12).for_training()
    data = type(data)(**{**data.__dict__, "train": ToyImages(12, 1)})
    data.train.labels = [0] * 9 + [1] * 3  # 9 COVID, 3 non-COVID
    assert class_weights("balanced", data).tolist() == pytest.approx([12 / (2 * 9), 12 / (2 * 3)])
    assert class_weights({"non-COVID": 2.0, "COVID": 0.5}, data).tolist() == [0.5, 2.0]
    assert class_weights("none", data) is None
    with pytest.raises(RecipeError, match=r"give one weight for each class: \['COVID', 'non-COVID'\]"):
        class_weights({"COVID": 1.0}, data)
    data.train.labels = [0] * 12
    with pytest.raises(RecipeError, match="non-COVID has no images there"):
        class_weights("balanced", data)


def test_class_weights_change_training(tmp_path):
    plain = _trained(tmp_path, "plain", _phase_one()).state_dict["head.output.weight"]
    weighted = _trained(tmp_path, "weighted", _phase_one(), class_weights={"COVID": 3.0, "non-COVID": 1.0})
    assert not torch.equal(weighted.state_dict["head.output.weight"], plain)


# --- from scratch ---------------------------------------------------------------------------------


def test_from_scratch_trains_every_layer_and_batchnorm_statistics(tmp_path, caplog):
    start = make_model().state_dict()
    with caplog.at_level(logging.WARNING, logger="ctframe.test"):
        trained = _trained(tmp_path, "run", _phase_one(), from_scratch=True).state_dict
    changed = {
        name for name, tensor in trained.items() if not torch.equal(tensor.float(), start[name].float())
    }
    backbone = {name for name in start if name.startswith("backbone.") and "num_batches" not in name}
    assert backbone <= changed  # conv and BatchNorm weights, running means and variances
    assert "random features" not in caplog.text  # training from scratch is what the hint suggests


def test_hints_at_the_start(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ctframe.test"):
        _trained(tmp_path, "frozen", _phase_one())  # the toy's BatchNorm has never seen data
    assert "learns only a head on random features; set trainer.from_scratch = true" in caplog.text
    caplog.clear()
    model = make_model()
    model.backbone.bn1.running_var.fill_(2.0)  # statistics of a trained network: pretrained weights
    with caplog.at_level(logging.WARNING, logger="ctframe.test"):
        trainer = make_trainer(initial=_phase_one(), finetuned={"epochs": 0}, from_scratch=True)
        fit(trainer, model, make_splits(), make_context(tmp_path / "pretrained"))
    assert "from_scratch = true trains every layer of a backbone that has pretrained weights" in caplog.text


# --- option errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"optimizer": "adam"}, "optimizer is set per phase: trainer.initial.optimizer and"),
        (
            {"initial": {"optimizer": "adam"}},
            r"initial.optimizer: Input should be 'rmsprop', 'adamw' or 'sgd'",
        ),
        ({"initial": {"weight_decay": 0.1}}, "weight_decay needs optimizer = 'adamw' or 'sgd'"),
        ({"initial": {"nesterov": True}}, "nesterov needs optimizer = 'sgd' and momentum > 0"),
        (
            {"initial": {"schedule": "cosine", "lr": 1e-3, "min_lr": 1e-2}},
            r"min_lr \(0.01\) must be below lr",
        ),
        ({"class_weights": {"COVID": 0}}, "class weights must be positive numbers"),
        ({"class_weights": "inverse"}, "class_weights"),
    ],
)
def test_option_errors_are_one_line(values, message):
    with pytest.raises(RecipeError, match=message) as error:
        validate_options(TwoPhaseOptions, values, Path("recipe.toml"), "trainer")
    assert "\n" not in str(error.value)
