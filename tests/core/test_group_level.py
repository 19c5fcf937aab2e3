"""The unit of decision: evaluation per group (patient) beside per image. The group threshold comes from
validation groups only, intervals resample groups, and a toy run writes both levels. Probabilities fp64."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from ctframe import DataError, DataSplits, Kind, Predictions
from ctframe.commands.main import main
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.results import ModelPredictions
from ctframe.registry.plugins import PLUGINS_ENV, build_registry
from ctframe.storage.rundir import RunDirectory

CLASSES = ("COVID", "non-COVID")  # the positive class "non-COVID" is index 1


@pytest.fixture
def metrics(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    registry = build_registry()

    def build(*names: str):
        return [
            (n, registry.get(Kind.METRIC, n).factory(registry.get(Kind.METRIC, n).options(), None))
            for n in names
        ]

    return build


def grouped_predictions(cases, prefix: str) -> tuple[Predictions, dict[str, str]]:
    """``cases``: ``(group, label, [positive-class scores of its images])``; returns the predictions and
    the sample -> group map."""
    ids, labels, scores, groups = [], [], [], {}
    for group, label, values in cases:
        for value in values:
            sample = f"{prefix}{len(ids)}"
            ids.append(sample)
            labels.append(label)
            scores.append(value)
            groups[sample] = group
    positive = np.asarray(scores, dtype=np.float64)
    return Predictions(tuple(ids), np.asarray(labels), np.stack([1 - positive, positive], axis=1)), groups


VAL = [("vp1", 1, [0.5, 0.7]), ("vp2", 1, [0.7, 0.7]), ("vn1", 0, [0.1, 0.3]), ("vn2", 0, [0.3, 0.3])]
TEST = [("tp1", 1, [0.8, 0.4, 0.6]), ("tp2", 1, [0.55]), ("tn1", 0, [0.2, 0.65]), ("tn2", 0, [0.1, 0.1])]


def _group_threshold(val_cases, test_cases, metrics) -> float:
    val, val_groups = grouped_predictions(val_cases, "v")
    test, test_groups = grouped_predictions(test_cases, "t")
    data = EvaluationData(CLASSES, "non-COVID", groups={**val_groups, **test_groups}, group_unit="patient")
    settings = EvaluationSettings(group_threshold="youden", bootstrap=0)
    result = evaluate([ModelPredictions("m", "Model", val, test)], data, metrics("recall"), settings, None, 0)
    group = result["m"].group
    assert group is not None and group.threshold.chosen_on == "val" and group.threshold.method == "youden"
    assert result["m"].threshold.value == 0.5  # the image level keeps its own (fixed) threshold
    return group.threshold.value


def test_the_group_threshold_is_chosen_on_validation_groups_and_never_sees_test(metrics):
    # validation group means: positives 0.6 and 0.7, negatives 0.2 and 0.3: Youden's J is 1 from 0.6 down
    assert _group_threshold(VAL, TEST, metrics) == pytest.approx(0.6, abs=1e-12)
    other_test = [(g, label, [1 - v for v in values]) for g, label, values in TEST]
    assert _group_threshold(VAL, other_test, metrics) == pytest.approx(0.6, abs=1e-12)
    moved = [("vp1", 1, [0.3, 0.5]), *VAL[1:]]  # vp1's mean drops to 0.4
    assert _group_threshold(moved, TEST, metrics) == pytest.approx(0.4, abs=1e-12)


def test_group_level_metrics_at_the_group_threshold(metrics, tmp_path):
    val, val_groups = grouped_predictions(VAL, "v")
    test, test_groups = grouped_predictions(TEST, "t")
    data = EvaluationData(CLASSES, "non-COVID", groups={**val_groups, **test_groups}, group_unit="patient")
    settings = EvaluationSettings(group_threshold="youden", bootstrap=200)
    chosen = metrics("accuracy", "recall", "specificity", "confusion_matrix")
    console = Console(record=True, width=200)
    model = ModelPredictions("m", "Model", val, test)
    evaluate([model], data, chosen, settings, RunDirectory(tmp_path), 0, console)
    written = json.loads((tmp_path / "metrics.json").read_text())
    image, group = written["models"]["m"], written["models"]["m"]["group_level"]
    assert image["test_samples"] == 8 and image["threshold"]["value"] == 0.5  # image level as before
    assert group["unit"] == "patient" and group["groups"] == 4
    assert group["aggregate"] == {"method": "mean"}
    assert group["class_counts"] == {"COVID": 2, "non-COVID": 2}
    assert group["images_per_group"] == {"min": 1, "median": 2.0, "max": 3}
    # group means: tp1 0.6, tp2 0.55 (positive); tn1 0.425, tn2 0.1; at 0.6: tp2 is missed
    assert group["metrics"]["recall"]["value"] == 0.5 and group["metrics"]["specificity"]["value"] == 1.0
    assert group["confusion"]["matrix"] == [[2, 0], [1, 1]]
    assert group["values"]["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    assert sum(group["reliability"]["counts"]) == 4 and set(group["calibration"]) == {"ece", "brier"}
    brier = np.mean(np.square([0.6 - 1, 0.55 - 1, 0.425, 0.1]))
    assert group["calibration"]["brier"]["value"] == pytest.approx(brier, abs=1e-12)
    assert "stratified bootstrap of patients" in group["bootstrap"]
    per_model = json.loads((tmp_path / "metrics_m.json").read_text())
    assert per_model["group_level"] == group
    text = " ".join(console.export_text().split())  # captions wrap at the table's width
    assert "Test metrics per patient (4 patients, mean of images)" in text
    assert "threshold 0.600 (Youden's J on validation) on the patient probability" in text
    assert "resamples of patients" in text


def test_without_groups_there_is_no_group_level(metrics, tmp_path):
    test, _ = grouped_predictions(TEST, "t")
    console = Console(record=True, width=200)
    settings = EvaluationSettings(bootstrap=0)
    model = ModelPredictions("m", "Model", test, test)
    result = evaluate(
        [model],
        EvaluationData(CLASSES, "non-COVID"),
        metrics("recall"),
        settings,
        RunDirectory(tmp_path),
        0,
        console,
    )
    assert result["m"].group is None
    assert "group_level" not in json.loads((tmp_path / "metrics.json").read_text())["models"]["m"]
    assert "per " not in console.export_text()


def _study(seed: int, groups_per_class: int = 30, images: int = 8):
    """Patients whose images share a patient-level score: their images are not independent."""
    rng = np.random.default_rng(seed)
    cases = []
    for label in (0, 1):
        for g in range(groups_per_class):
            base = rng.normal(0.4 + 0.2 * label, 0.2)
            cases.append(
                (f"p{label}-{g}", label, list(np.clip(base + rng.normal(0, 0.05, images), 0.01, 0.99)))
            )
    return cases


def _accuracy(cases, metrics, with_groups=True):
    test, groups = grouped_predictions(cases, "t")
    data = EvaluationData(CLASSES, "non-COVID", groups=groups if with_groups else {}, group_unit="patient")
    settings = EvaluationSettings(bootstrap=2000)
    result = evaluate(
        [ModelPredictions("m", "M", test, test)], data, metrics("accuracy", "roc_auc"), settings, None, 5
    )
    return result["m"]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_group_bootstrap_resamples_groups(metrics, seed):
    cases = _study(seed)
    one = _accuracy(cases, metrics).group
    width = one.estimates["accuracy"].high - one.estimates["accuracy"].low
    # The same images under the same ids, each copied once more: still 60 patients, the same answer.
    doubled = [(g, label, values * 2) for g, label, values in cases]
    same = _accuracy(doubled, metrics).group
    assert same.groups == 60
    for name in ("accuracy", "roc_auc"):
        assert same.estimates[name].low == pytest.approx(one.estimates[name].low, abs=1e-12)
        assert same.estimates[name].high == pytest.approx(one.estimates[name].high, abs=1e-12)
    # One patient copied under a new id counts as one more patient, and changes the interval.
    extra = _accuracy([*cases, ("copy", *cases[0][1:])], metrics).group
    assert extra.groups == 61
    assert (extra.estimates["roc_auc"].low, extra.estimates["roc_auc"].high) != (
        one.estimates["roc_auc"].low,
        one.estimates["roc_auc"].high,
    )
    # Every patient copied under a new id: twice the units, an interval about 1/sqrt(2) as wide.
    twice = _accuracy([*cases, *[(f"copy-{g}", label, v) for g, label, v in cases]], metrics).group
    assert twice.groups == 120 and twice.estimates["accuracy"].value == one.estimates["accuracy"].value
    ratio = (twice.estimates["accuracy"].high - twice.estimates["accuracy"].low) / width
    assert 0.55 < ratio < 0.9
    # Images taken as independent (no groups at all) give a far narrower interval than the patients hold.
    images = _accuracy(cases, metrics, with_groups=False).estimates["accuracy"]
    assert width > 1.8 * (images.high - images.low)


def test_more_than_two_classes_are_decided_by_the_most_probable_class_per_group(metrics):
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    test = Predictions(("a", "b", "c", "d"), np.array([0, 0, 1, 2]), probabilities)
    data = EvaluationData(("x", "y", "z"), "y", groups={"a": "p", "b": "p", "c": "q", "d": "r"})
    settings = EvaluationSettings(aggregate="max", bootstrap=0)
    result = evaluate([ModelPredictions("m", "M", test, test)], data, metrics("accuracy"), settings, None, 0)
    group = result["m"].group
    assert group.threshold.method == "argmax" and group.groups == 3
    # p: maxima (0.6, 0.3, 0.6) renormalised -> a tie between x and z; argmax takes x, which is right
    assert group.estimates["accuracy"].value == 1.0
    assert group.confusion["matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_a_group_with_two_true_classes_stops_evaluation_with_one_line(metrics):
    val, val_groups = grouped_predictions(VAL, "v")
    test, groups = grouped_predictions([("p", 0, [0.2]), ("p", 1, [0.7]), ("q", 1, [0.9])], "t")
    data = EvaluationData(CLASSES, "non-COVID", groups={**val_groups, **groups}, group_unit="patient")
    with pytest.raises(
        DataError, match=r"^Model, per patient, test split: 1 group\(s\) hold images of more than one"
    ):
        evaluate(
            [ModelPredictions("m", "Model", val, test)],
            data,
            metrics("recall"),
            EvaluationSettings(bootstrap=0),
            None,
            0,
        )


def test_the_unit_comes_from_the_dataset():
    splits = DataSplits(CLASSES, "COVID", [], [], [], groups={"s": "p"}, group_unit="study")
    assert EvaluationData.from_splits(splits).group_unit == "study"
    assert DataSplits(CLASSES, "COVID", [], [], []).group_unit == "group"


def test_a_toy_run_writes_both_levels(toy_site, toy_recipe, tmp_path, monkeypatch, capsys):
    import toy_ctframe

    def with_groups(*args, **kwargs):
        splits = DataSplits(*args, **kwargs)
        ids = [sid for split in (splits.train, splits.val, splits.test) for sid in split.ids]
        # toy labels alternate with the index, so index % 8 keeps one class per group: 8 groups of 4
        groups = {sid: f"{sid.split('/')[0]}-{int(sid.split('/')[1]) % 8}" for sid in ids}
        return DataSplits(*args, **kwargs, groups=groups, group_unit="patient")

    monkeypatch.setattr(toy_ctframe, "DataSplits", with_groups)
    assert (
        main(["run", str(toy_recipe), "--output", str(tmp_path / "runs"), "--set", "trainer.epochs=2"]) == 0
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    model = json.loads((run_dir / "metrics.json").read_text())["models"]["toy"]
    assert model["test_samples"] == 32 and "toy_accuracy" in model["metrics"]  # the image level stays
    group = model["group_level"]
    assert group["groups"] == 8 and group["class_counts"] == {"dark": 4, "bright": 4}
    assert group["images_per_group"] == {"min": 4, "median": 4.0, "max": 4}
    assert "toy_accuracy" in group["metrics"] and sum(map(sum, group["confusion"]["matrix"])) == 8
    assert group["unit"] == "patient"  # the dataset's word for its groups reaches metrics and console
    assert "Test metrics per patient (8 patients, mean of images)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"method": "youden", "value": 0.6, "chosen_on": "val"}, "chosen on the validation groups (youden)"),
        ({"method": "fixed", "value": 0.5, "chosen_on": None}, "threshold fixed, not chosen on data"),
        ({"method": "argmax", "value": None, "chosen_on": None}, "the most probable class decides"),
    ],
)
def test_the_report_says_how_the_group_threshold_was_set(rule, says):
    from ctframe.report.sections.results import _group_level

    level = {"unit": "patient", "groups": 4, "metrics": {}, "calibration": {}, "threshold": rule}
    text = "\n".join(_group_level({"m": {"title": "M", "group_level": level}}))
    assert says in text
