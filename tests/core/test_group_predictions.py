"""Predictions at both levels: a run, ``predict``, ``evaluate``, ``metrics`` and ``cv`` write the image file
and the per-group file, the two agree, and the model's own group rule travels in its model file.

The toy plugin (tests/toy) with groups of 4 test images per "patient", cross-validation folds and a
reader of ``.npy`` images, so ``predict`` and ``evaluate`` work on files. Probabilities are fp32 from the
model, written with 8 significant digits; the aggregation itself is fp64.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ctframe import DataError, Predictions, ReadFiles, hookimpl
from ctframe.api import escape_path
from ctframe.commands.main import main
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.aggregate import Aggregation
from ctframe.evaluation.given_groups import groups_from_csv
from ctframe.evaluation.group_outputs import answer_groups
from ctframe.evaluation.results import ModelPredictions
from ctframe.registry.plugins import PLUGINS_ENV
from ctframe.storage.rundir import RunDirectory
from tests.conftest import TESTS, install_distribution
from tests.toy.recipe import toy_recipe_text

CLASSES = ("dark", "bright")
PER_GROUP = 4
ABS = 1e-7  # 8 significant digits printed of probabilities below 1
MODE = {"mixed": False, "leak": False}
"""Switches of the grouped toy dataset: mixed-class groups; test groups shared by the folds."""


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: list[torch.Tensor], ids: list[str]):
        self.images, self.ids = images, ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], -1, self.ids[index]


class NpyReader:
    """Reads ``.npy`` uint8 (3, H, W) images; each file's group is its folder (unit "folder")."""

    def read(self, paths, on_bad_image="error") -> ReadFiles:
        found = sorted(
            p for path in map(Path, paths) for p in ([path] if path.is_file() else path.rglob("*.npy"))
        )
        ids = [escape_path(path) for path in found]
        images = [torch.from_numpy(np.load(path)) for path in found]
        groups = {sample: path.parent.name for sample, path in zip(ids, found, strict=True)}
        return ReadFiles(_Images(images, ids), {i: i for i in ids}, groups=groups, group_unit="folder")


def _group_of(index: int) -> int:
    """Toy labels alternate with the index: index % 8 keeps one class per group (8 groups of 4 in a split
    of 32); index // 4 mixes both classes in every group."""
    return index // PER_GROUP if MODE["mixed"] else index % (2 * PER_GROUP)


def _grouped_toy(toy):
    def build(options, context):
        fold = context.fold
        if fold is not None:  # each fold its own test images (and ids), unless the test asks for a leak
            context = replace(context, seed=context.seed + 100 * fold[0])
        data = toy.build_data(options, context)
        if fold is not None and not MODE["leak"]:
            data.test.ids = [f"fold{fold[0]}-{sid}" for sid in data.test.ids]
        ids = [sid for split in (data.train, data.val, data.test) for sid in split.ids]
        groups = {sid: f"{sid.split('/')[0]}-{_group_of(int(sid.split('/')[1]))}" for sid in ids}
        summary = {**data.summary, **({"fold": list(fold)} if fold is not None else {})}
        files = {sid: f"{sid}.png" for sid in ids}
        return type(data)(
            data.class_names, data.positive_class, data.train, data.val, data.test,
            files=files, summary=summary, groups=groups, group_unit="patient",
        )  # fmt: skip

    @hookimpl
    def ctframe_register_datasets(register):
        register(
            "toy_data", build, toy.ToyDataOptions, "toy, grouped", reader=lambda options, context: NpyReader()
        )

    return ctframe_register_datasets


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    site = install_distribution(
        tmp_path_factory.mktemp("site"), TESTS / "toy" / "toy_ctframe.py", "toy_ctframe", "toy"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.setenv(PLUGINS_ENV, "toy")
        import toy_ctframe

        patch.setattr(toy_ctframe, "ctframe_register_datasets", _grouped_toy(toy_ctframe))
        yield toy_ctframe
    sys.modules.pop("toy_ctframe", None)


def _recipe(folder: Path, **evaluation) -> Path:
    recipe = folder / "toy.toml"
    recipe.write_text(toy_recipe_text(trainer={"epochs": 3}, evaluation={"bootstrap": 0, **evaluation}))
    return recipe


@pytest.fixture(scope="module")
def run(toy, tmp_path_factory) -> Path:
    """A toy run whose group threshold is chosen on validation groups, aggregated by top-2 mean."""
    folder = tmp_path_factory.mktemp("grouped-run")
    recipe = _recipe(folder, aggregate="topk_mean", aggregate_k=2, group_threshold="youden")
    assert main(["run", str(recipe), "--output", str(folder / "runs")]) == 0
    (path,) = (folder / "runs").iterdir()
    return path


@pytest.fixture(scope="module")
def files(toy, run, tmp_path_factory) -> tuple[Path, Path]:
    """The run's test images as .npy files in class folders (regenerated from the same seed), and a
    UCSD-style groups CSV (class, file, patient_id) that groups them as the run did."""
    folder = tmp_path_factory.mktemp("files")
    test = toy.ToySplit(32, 8, 2, 7 + 2, "test")  # toy.toml: seed 7, 32 images of 8 px; test is seed + 2
    rows = []
    for index, sid in enumerate(test.ids):
        label = CLASSES[int(test.labels[index])]
        name = f"img-{index:04d}.npy"
        (folder / "images" / label).mkdir(parents=True, exist_ok=True)
        np.save(folder / "images" / label / name, test.images[index].numpy())
        rows.append((label, name, f"{sid.split('/')[0]}-{index % (2 * PER_GROUP)}"))
    groups = folder / "patients.csv"
    with open(groups, "w", newline="") as handle:
        csv.writer(handle).writerows([("class", "file", "patient_id"), *rows])
    return folder / "images", groups


def _aggregate(values: list[float], method: str, k: int = 2) -> float:
    ordered = sorted(values, reverse=True)
    return float(np.mean(ordered[:k])) if method == "topk_mean" else float(np.mean(values))


def _check_agreement(images: list[dict[str, str]], groups: list[dict[str, str]], method: str) -> None:
    """Each group row: its images' count, their aggregated probability, the decision at its threshold and
    its top images, all from the image rows of that group."""
    by_group: dict[str, list[dict[str, str]]] = {}
    for row in images:
        by_group.setdefault(row["group"], []).append(row)
    assert sorted(row["group"] for row in groups) == sorted(by_group)
    for row in groups:
        members = by_group[row["group"]]
        positive = [float(member["p_bright"]) for member in members]
        assert int(row["images"]) == len(members)
        assert float(row["p_bright"]) == pytest.approx(_aggregate(positive, method), abs=ABS)
        assert float(row["p_dark"]) == pytest.approx(1 - float(row["p_bright"]), abs=ABS)
        decided = "bright" if float(row["p_bright"]) >= float(row["threshold"]) else "dark"
        assert row["predicted_class"] == decided and row["positive_class"] == "bright"
        top = sorted(members, key=lambda member: (-float(member["p_bright"]), member["sample_id"]))[:3]
        assert row["top_samples"].split(";") == [member["sample_id"] for member in top]
        values = [float(v) for v in row["top_probabilities"].split(";")]
        assert values == pytest.approx([float(member["p_bright"]) for member in top], abs=ABS)


def test_a_run_writes_both_files_and_they_agree(run):
    images, groups = _rows(run / "predictions_toy.csv"), _rows(run / "predictions_toy_patient.csv")
    assert len(images) == 32 and len(groups) == 32 // PER_GROUP
    assert list(groups[0]) == [
        "group", "unit", "images", "true_class", "predicted_class", "positive_class", "threshold",
        "aggregate", "p_dark", "p_bright", "top_samples", "top_probabilities",
    ]  # fmt: skip
    assert {row["unit"] for row in groups} == {"patient"}
    assert {row["aggregate"] for row in groups} == {"topk_mean(k=2)"}
    _check_agreement(images, groups, "topk_mean")
    level = json.loads((run / "metrics.json").read_text())["models"]["toy"]["group_level"]
    assert level["threshold"]["method"] == "youden" and level["threshold"]["chosen_on"] == "val"
    assert {row["threshold"] for row in groups} == {f"{level['threshold']['value']:.8g}"}
    truth = {row["group"]: row["true_class"] for row in images}
    assert all(row["true_class"] == truth[row["group"]] for row in groups)


def test_the_model_file_keeps_the_group_rule(run):
    stored = json.loads((run / "models" / "toy.json").read_text())["group_rule"]
    level = json.loads((run / "metrics.json").read_text())["models"]["toy"]["group_level"]
    assert stored["unit"] == "patient" and stored["aggregate"] == {"method": "topk_mean", "k": 2}
    assert stored["threshold"] == level["threshold"]["value"]
    assert stored["threshold_choice"]["method"] == "youden"


def test_predict_with_groups_writes_one_row_per_group_by_the_models_rule(run, files, tmp_path, capsys):
    images, groups = files
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(images), "-o", str(out), "--groups", str(groups)]) == 0
    assert "preds_patient.csv (8 patients)" in capsys.readouterr().out
    rows, per_group = _rows(out), _rows(tmp_path / "preds_patient.csv")
    assert len(rows) == 32 and len(per_group) == 8 and "true_class" not in per_group[0]
    _check_agreement(rows, per_group, "topk_mean")
    # the same images, groups and model as the run's test split: the same answer per patient (fp32)
    ran = {row["group"]: row for row in _rows(run / "predictions_toy_patient.csv")}
    for row in per_group:
        assert float(row["p_bright"]) == pytest.approx(float(ran[row["group"]]["p_bright"]), abs=1e-6)
        assert row["threshold"] == ran[row["group"]]["threshold"]
    # without --groups the reader's own groups (one per folder) answer; --groups replaced them above
    assert main(["predict", str(run), str(images), "-o", str(out), "--force"]) == 0  # replaces preds.csv
    by_folder = _rows(tmp_path / "preds_folder.csv")
    assert sorted(row["group"] for row in by_folder) == ["bright", "dark"]
    assert {row["images"] for row in by_folder} == {"16"}


def test_predict_names_what_the_groups_csv_misses(run, files, tmp_path, capsys):
    images, groups = files
    partial = tmp_path / "partial.csv"
    partial.write_text("".join(groups.read_text().splitlines(keepends=True)[:-2]))
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(images), "-o", str(out), "--groups", str(partial)]) == 2
    error = capsys.readouterr().err.strip()
    assert "2 predicted file(s) have no row (first: " in error and len(error.splitlines()) == 1
    assert not out.exists()
    # rows of files not predicted are ignored: predicting one class folder with the whole CSV works
    assert main(["predict", str(run), str(images / "dark"), "-o", str(out), "--groups", str(groups)]) == 0
    assert len(_rows(tmp_path / "p_patient.csv")) == 4  # the patients whose images are dark


def test_evaluate_with_groups_reuses_the_models_group_rule(run, files, capsys):
    images, groups = files
    recipe = run / "recipe.toml"
    original = recipe.read_text()
    changed = original.replace('aggregate = "topk_mean"', 'aggregate = "max"').replace(
        'group_threshold = "youden"', 'group_threshold = "fixed"'
    )
    assert changed != original
    recipe.write_text(changed.replace("fixed_threshold = 0.5", "fixed_threshold = 0.9"))
    try:
        arguments = ["evaluate", str(run), "--data", str(images), "--groups", str(groups), "--name", "ext"]
        assert main(arguments) == 0
    finally:
        recipe.write_text(original)
    external = run / "external" / "ext"
    level = json.loads((external / "metrics.json").read_text())["models"]["toy"]["group_level"]
    stored = json.loads((run / "models" / "toy.json").read_text())["group_rule"]
    assert level["unit"] == "patient" and level["groups"] == 8
    assert level["aggregate"] == stored["aggregate"]  # not the edited recipe's max
    assert level["threshold"]["value"] == stored["threshold"]  # not 0.9, not chosen again
    _check_agreement(
        _rows(external / "predictions_toy.csv"), _rows(external / "predictions_toy_patient.csv"), "topk_mean"
    )
    source = json.loads((external / "source.json").read_text())
    assert source["groups"]["unit"] == "patient" and source["groups"]["from"].endswith("patients.csv")
    assert "Test metrics per patient (8 patients" in " ".join(capsys.readouterr().err.split())


def test_an_old_model_file_without_a_group_rule_still_answers_per_group(run, files, tmp_path, caplog):
    images, groups = files
    models = tmp_path / "models"
    shutil.copytree(run / "models", models)
    info = json.loads((models / "toy.json").read_text())
    del info["group_rule"]
    info["format_version"] = 1  # as ctframe wrote it then: no integrity block either
    del info["integrity"]
    (models / "toy.json").write_text(json.dumps(info))
    out = tmp_path / "old.csv"
    with caplog.at_level(logging.WARNING, logger="ctframe"):
        assert (
            main(["predict", str(models / "toy.json"), str(images), "-o", str(out), "--groups", str(groups)])
            == 0
        )
    said = [record.getMessage() for record in caplog.records if "no group rule" in record.getMessage()]
    assert said == ["toy.json has no group rule (written before ctframe stored one): groups use the mean of "
                    "images and the fixed threshold 0.5"]  # fmt: skip
    rows = _rows(tmp_path / "old_patient.csv")
    assert {row["aggregate"] for row in rows} == {"mean"} and {row["threshold"] for row in rows} == {"0.5"}
    _check_agreement(_rows(out), rows, "mean")


def test_metrics_scores_a_group_file_per_group(run, tmp_path, capsys):
    source = run / "predictions_toy_patient.csv"
    assert main(["metrics", str(source), "-o", str(tmp_path / "m"), "--bootstrap", "50"]) == 0
    scored = json.loads((tmp_path / "m" / "metrics.json").read_text())
    model = scored["models"]["toy_patient"]
    assert scored["unit"] == "patient" and model["title"] == "toy_patient (per patient)"
    assert model["test_samples"] == 8 and "group_level" not in model
    assert scored["bootstrap"]["method"].endswith("stratified bootstrap of patients")
    level = json.loads((run / "metrics.json").read_text())["models"]["toy"]["group_level"]
    assert model["metrics"]["toy_accuracy"]["value"] == pytest.approx(
        level["metrics"]["toy_accuracy"]["value"]
    )
    assert "Test metrics per patient" in capsys.readouterr().err
    assert (tmp_path / "m" / "report.html").is_file()


def test_cv_pools_one_row_per_group_and_no_group_is_in_two_folds(toy, tmp_path):
    recipe = _recipe(tmp_path)
    assert main(["cv", str(recipe), "--folds", "2", "-o", str(tmp_path / "cv")]) == 0
    (root,) = (tmp_path / "cv").iterdir()
    pooled = _rows(root / "predictions_toy_patient.csv")
    folds = [_rows(root / f"fold-{fold}" / "predictions_toy_patient.csv") for fold in range(2)]
    assert len(pooled) == sum(map(len, folds)) == 16
    tested = [{row["group"] for row in rows} for rows in folds]
    assert not tested[0] & tested[1] and {row["group"] for row in pooled} == tested[0] | tested[1]
    by_group = {row["group"]: row for rows in folds for row in rows}
    for row in pooled:  # each group's probability is the one its own fold's model gave (from the pooled
        # image file's 8 printed digits, so equal to the printed precision)
        assert float(row["p_bright"]) == pytest.approx(float(by_group[row["group"]]["p_bright"]), abs=ABS)
        assert row["threshold"] == by_group[row["group"]]["threshold"]
    _check_agreement(_rows(root / "predictions_toy.csv"), pooled, "mean")
    metrics = json.loads((root / "metrics.json").read_text())["models"]["toy"]
    assert metrics["group_level"]["groups"] == 16 and metrics["group_level"]["unit"] == "patient"
    summary = json.loads((root / "folds.json").read_text())
    assert len(summary["per_fold_group_level"]["toy"]["toy_accuracy"]["folds"]) == 2


def test_cv_refuses_a_group_tested_in_two_folds(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODE, "leak", True)
    recipe = _recipe(tmp_path)
    assert main(["cv", str(recipe), "--folds", "2", "-o", str(tmp_path / "cv")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "group(s) were also tested in an earlier fold (first: test-0 in fold-0)" in error


def test_a_group_of_two_classes_stops_the_run_before_training(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODE, "mixed", True)
    recipe = _recipe(tmp_path)
    assert main(["run", str(recipe), "--output", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "dataset 'toy_data', validation split: 8 group(s) hold images of more than one true class" in error
    (path,) = (tmp_path / "runs").iterdir()
    assert "toy epoch" not in (path / "run.log").read_text()  # the trainer never started


# ------------------------------------------------------------------------------ the groups CSV


def test_a_groups_csv_matches_files_by_their_last_path_parts(tmp_path):
    names = ["data/CT_COVID/a.png", "data/CT_NonCOVID/b.png", "c.png"]
    files = {f"s{i}": name for i, name in enumerate(names)}
    table = tmp_path / "patients.csv"
    table.write_text(
        "class,file,patient_id,official_split\n"
        "CT_COVID,a.png,Patient 1,train\nCT_NonCOVID,CT_NonCOVID/b.png,Patient 2,test\n"
        "x,/elsewhere/c.png,Patient 1,val\nx,never-predicted.png,Patient 9,val\n"
    )
    groups, unit = groups_from_csv(table, files)
    assert unit == "patient" and groups == {"s0": "Patient 1", "s1": "Patient 2", "s2": "Patient 1"}
    (tmp_path / "plain.csv").write_text("file,group\na.png,g\nb.png,g\nc.png,h\n")
    assert groups_from_csv(tmp_path / "plain.csv", files)[1] == "group"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,group\nA/a.png,g\n", "1 predicted file(s) have no row (first: B/a.png); add a file,group row"),
        ("file,group\nA/a.png,g\nB/a.png,g\na.png,h\n", "line 4: a.png matches 2 predicted files"),
        (
            "file,group\nA/a.png,g\nB/a.png,h\nA/a.png,k\n",
            "line 4: A/a.png is in group 'k' and, on an earlier",
        ),
        ("file,kind\nA/a.png,g\n", "no group column (one of group, patient_id,"),
        ("name,group\nA/a.png,g\n", "no 'file' column"),
        ("file,group\nA/a.png,\n", "line 2: A/a.png has no group"),
    ],
)
def test_a_groups_csv_that_does_not_fit_gets_one_line(tmp_path, content, message):
    table = tmp_path / "groups.csv"
    table.write_text(content)
    with pytest.raises(DataError) as error:
        groups_from_csv(table, {"x": "A/a.png", "y": "B/a.png"})
    assert message in str(error.value) and "\n" not in str(error.value)


# ------------------------------------------------------------------------- every rule, both levels

REFERENCE = {  # each rule written out independently of ctframe.evaluation.aggregate
    "mean": np.mean,
    "max": np.max,
    "topk_mean": lambda p: np.mean(np.sort(p)[-3:]),
    "quantile": lambda p: np.quantile(p, 0.75),
    "noisy_or": lambda p: 1 - np.prod(1 - p),
}


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_the_group_file_is_the_image_file_aggregated_by_each_rule(method, tmp_path):
    rng = np.random.default_rng(3)
    sizes = [1, 2, 5, 7, 3, 4]
    ids = [f"img{i}" for i in range(sum(sizes))]
    owner = np.repeat([f"p{g}" for g in range(len(sizes))], sizes)
    labels = np.repeat([g % 2 for g in range(len(sizes))], sizes)
    positive = rng.uniform(0.001, 0.6, len(ids))
    test = Predictions(tuple(ids), labels, np.stack([1 - positive, positive], axis=1))
    data = EvaluationData(CLASSES, "bright", groups=dict(zip(ids, owner, strict=True)), group_unit="patient")
    settings = EvaluationSettings(aggregate=method, aggregate_k=3, aggregate_quantile=0.75, bootstrap=0)
    how = Aggregation.from_settings(settings)
    answers = answer_groups(test, owner, 1, how, 0.5, "patient")  # fp64, in memory
    for row, group in enumerate(answers.grouped.predictions.sample_ids):
        expected = REFERENCE[method](positive[owner == group])
        assert answers.grouped.predictions.probabilities[row, 1] == pytest.approx(expected, abs=1e-12)
    evaluate([ModelPredictions("m", "M", test, test)], data, [], settings, RunDirectory(tmp_path), 0)
    images, groups = _rows(tmp_path / "predictions_m.csv"), _rows(tmp_path / "predictions_m_patient.csv")
    assert len(groups) == len(sizes)
    for row in groups:  # the written files agree to their 8 printed digits
        mine = np.asarray([float(r["p_bright"]) for r in images if r["group"] == row["group"]])
        assert float(row["p_bright"]) == pytest.approx(REFERENCE[method](mine), abs=ABS)
        assert int(row["images"]) == len(mine) and row["aggregate"].startswith(method)
