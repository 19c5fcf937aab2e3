"""The mil trainer's contract with the engine: its one-line refusals, its history, the model it returns
and the file of top images; and one run of recipes/ct_volumes_mil.toml through the command line."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace

import pytest
import torch
from ctframe_mil.bags import image_features, make_bags
from ctframe_mil.loop import evaluate
from ctframe_mil.options import MilOptions
from ctframe_mil.run_files import TOP_IMAGES
from ctframe_mil.trainer import MilTrainer

from ctframe import DataError, RecipeError
from ctframe.base.training import REQUIRED_HISTORY_COLUMNS, check_trainer_contract
from ctframe.commands.main import main
from tests.conftest import REPO
from tests.plugins.mil.synthetic import context, make_model, make_splits


@pytest.fixture(scope="module")
def data():
    return make_splits(0, patients=6, test_patients=2, images=4, contrast=80.0)


def _trainer(**options) -> MilTrainer:
    return MilTrainer(MilOptions.model_validate({"precision": "fp32", "epochs": 3, **options}))


def test_it_meets_the_trainer_contract():
    trainer = _trainer()
    check_trainer_contract(trainer, "trainer 'mil'")
    assert trainer.precision == "fp32" and trainer.supports_distributed is False


def test_for_training_hands_the_groups_to_the_trainer(data):
    training = data.for_training()
    assert training.groups == data.groups and training.group_unit == "patient"


def test_without_groups_it_says_which_datasets_give_them(data, tmp_path):
    no_groups = replace(data, groups={})
    with pytest.raises(DataError, match="no groups.*ct_volumes.*group_by"):
        _trainer().fit(make_model(0), no_groups.for_training(), context(tmp_path, 0))


def test_it_learns_two_classes_only(data, tmp_path):
    three = replace(data, class_names=("a", "negative", "positive"))
    with pytest.raises(RecipeError, match="two classes"):
        _trainer().fit(make_model(0), three.for_training(), context(tmp_path, 0))


def test_a_group_of_two_classes_or_an_image_without_group_is_refused(data, tmp_path):
    first, second = data.train.ids[0], data.train.ids[-1]  # patient 0 (negative), the last (positive)
    mixed = replace(data, groups={**data.groups, second: data.groups[first]})
    with pytest.raises(DataError, match=r"1 train patient\(s\) hold images of more than one class"):
        _trainer().fit(make_model(0), mixed.for_training(), context(tmp_path, 0))
    missing = replace(data, groups={k: v for k, v in data.groups.items() if k != first})
    with pytest.raises(DataError, match="1 train image.*no patient"):
        _trainer().fit(make_model(0), missing.for_training(), context(tmp_path, 0))


def test_history_model_and_top_images(data, tmp_path, caplog):
    model = make_model(0)
    with caplog.at_level(logging.INFO, logger="ctframe.test.mil"):
        trainer = _trainer(epochs=6, lr=0.03, top_images=2, pooling="topk_mean", k=2)
        (trained,) = trainer.fit(model, data.for_training(), context(tmp_path, 0))
    assert (trained.key, len(trained.history)) == ("mil", 6)
    assert all(set(REQUIRED_HISTORY_COLUMNS) <= set(row) for row in trained.history)
    assert {row["phase"] for row in trained.history} == {"mil"}
    assert [row["epoch"] for row in trained.history] == [1, 2, 3, 4, 5, 6]
    assert set(trained.state_dict) == set(model.state_dict())  # the whole classifier
    # restore_best: the weights returned are the best epoch's (fp32: the same numbers, recomputed)
    model.load_state_dict(dict(trained.state_dict))
    features, labels, ids, _ = image_features(
        model.backbone, data.val, None, device="cpu", batch_size=64, precision="fp32", num_workers=0
    )
    val = make_bags(features, labels, ids, data.groups, data.positive_index, "val", "patient")
    returned = evaluate(model.head, val, trainer.options, data.positive_index).loss
    losses = [row["val_loss"] for row in trained.history]
    assert losses[-1] > min(losses)  # the last epoch is not the best: restoring it shows
    assert returned == pytest.approx(min(losses), abs=1e-6)
    with open(TOP_IMAGES.path(tmp_path), newline="") as handle:
        rows = list(csv.DictReader(handle))
    val_ids = set(data.val.ids)
    assert len(rows) == 2 * len({data.groups[i] for i in val_ids})  # two per validation patient
    assert all(row["sample_id"] in val_ids and data.groups[row["sample_id"]] == row["group"] for row in rows)
    assert any("mil_top_images.csv" in line for line in caplog.messages)


def test_early_stopping_ends_training(data, tmp_path):
    torch.manual_seed(0)
    (trained,) = _trainer(epochs=40, patience=1, lr=0.5).fit(
        make_model(0), data.for_training(), context(tmp_path, 0)
    )
    assert len(trained.history) < 40


PLUGINS = "ct_volumes,resnet_v2,dense_head,mil,classification_metrics"
TINY = [
    "backbone.component=resnet50v2",
    "backbone.weights=none",
    "dataset.image_size=32",
    "head.units=16",
    "trainer.epochs=2",
    "evaluation.bootstrap=20",
]


@pytest.mark.slow
def test_the_recipe_runs_and_answers_per_patient(tmp_path, monkeypatch, capsys):
    from ctframe_ct_volumes.pseudonym import KEY_ENV
    from ctframe_ct_volumes.synthetic import write_synthetic_set

    data = tmp_path / "data"
    write_synthetic_set(data, patients=8, slices=6, size=(32, 32))
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
    monkeypatch.setenv(KEY_ENV, "k" * 40)
    values = [f"dataset.root={data}", f"dataset.labels={data / 'labels.csv'}", *TINY]
    overrides = [argument for value in values for argument in ("--set", value)]
    recipe = str(REPO / "recipes" / "ct_volumes_mil.toml")
    assert main(["validate", recipe, *overrides]) == 0
    assert main(["run", recipe, "--output", str(tmp_path / "runs"), *overrides]) == 0, capsys.readouterr().out
    (run,) = (tmp_path / "runs").iterdir()
    with open(TOP_IMAGES.path(run), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["sample_id"].startswith("se-") for row in rows)  # pseudonymous ids, no paths
    assert all(str(data) not in value for row in rows for value in row.values())
    assert (run / "models" / "mil.safetensors").is_file()
    group_level = json.loads((run / "metrics.json").read_text())["models"]["mil"]["group_level"]
    assert group_level["unit"] == "patient" and group_level["aggregate"] == {"method": "noisy_or"}
