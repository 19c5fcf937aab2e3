"""ctframe.evaluation: threshold choice on validation, bootstrap CIs, calibration, artifacts, table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import brier_score_loss

from ctframe import DataError, Kind, MetricInput, Predictions
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation import calibration as cal
from ctframe.evaluation.bootstrap import stratified_counts
from ctframe.evaluation.results import ModelPredictions
from ctframe.registry.plugins import PLUGINS_ENV, build_registry
from ctframe.storage.rundir import RunDirectory
from tests.conftest import REPO

CLASSES = ("COVID", "non-COVID")
STUDY_METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc"]


@pytest.fixture
def metrics(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    registry = build_registry()

    def build(*names: str):
        built = []
        for name in names:
            component = registry.get(Kind.METRIC, name)
            built.append((name, component.factory(component.options(), None)))
        return built

    return build


def predictions(scores, labels, prefix="s") -> Predictions:
    """Two-class predictions whose ``scores`` are the probability of class index 1."""
    scores = np.asarray(scores, dtype=float)
    ids = tuple(f"{prefix}{i}" for i in range(len(scores)))
    return Predictions(ids, np.asarray(labels), np.stack([1 - scores, scores], axis=1))


def noisy(rng, size, separation=0.25, prefix="s") -> Predictions:
    labels = rng.integers(0, 2, size)
    scores = np.clip(rng.normal(0.5 + separation * (2 * labels - 1), 0.2), 0.001, 0.999)
    return predictions(scores, labels, prefix)


def study_models(seed=0, size=300) -> list[ModelPredictions]:
    rng = np.random.default_rng(seed)
    return [
        ModelPredictions("initial", "Initial Model", noisy(rng, 120, 0.15, "v"), noisy(rng, size, 0.15)),
        ModelPredictions("finetuned", "Fine-Tuned Model", noisy(rng, 120, 0.25, "v"), noisy(rng, size, 0.25)),
    ]


DATA = EvaluationData(CLASSES, "non-COVID", {f"s{i}": f"/data/img{i}.png" for i in range(1000)})


def strict_json(path: Path):
    def refuse(constant):
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_youden_threshold_is_chosen_on_validation_and_applied_unchanged_to_test(metrics, tmp_path):
    # validation separates perfectly at 0.55: Youden's J = 1 there and lower everywhere else
    val = predictions([0.55, 0.7, 0.9, 0.1, 0.3, 0.5], [1, 1, 1, 0, 0, 0], "v")
    test = predictions([0.52, 0.6, 0.95, 0.2, 0.4, 0.56], [1, 1, 1, 0, 0, 0])
    model = ModelPredictions("m", "Model", val, test)
    settings = EvaluationSettings(threshold="youden", bootstrap=0)
    result = evaluate([model], DATA, metrics("recall", "precision"), settings, RunDirectory(tmp_path), 1)
    chosen = result["m"].threshold
    assert (chosen.method, chosen.value, chosen.chosen_on) == ("youden", 0.55, "val")
    # at 0.55 on test: 0.6, 0.95 and the negative 0.56 are called positive; 0.52 is missed
    assert result["m"].estimates["recall"].value == pytest.approx(2 / 3)
    assert result["m"].estimates["precision"].value == pytest.approx(2 / 3)
    rows = list(csv.DictReader((tmp_path / "predictions_m.csv").open()))
    assert [r["predicted_class"] for r in rows] == [
        "COVID",
        "non-COVID",
        "non-COVID",
        "COVID",
        "COVID",
        "non-COVID",
    ]
    # the test predictions never move the threshold
    shifted = ModelPredictions("m", "Model", val, predictions([0.01] * 3 + [0.99] * 3, [1, 1, 1, 0, 0, 0]))
    assert evaluate([shifted], DATA, metrics("recall"), settings, None, 1)["m"].threshold.value == 0.55


@pytest.mark.parametrize("target, expected", [(0.75, 0.4), (1.0, 0.2), (0.25, 0.8)])
def test_sensitivity_threshold_is_the_highest_reaching_the_target(metrics, target, expected):
    val = predictions([0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5, 0.7], [1, 1, 1, 1, 0, 0, 0, 0], "v")
    model = ModelPredictions("m", "Model", val, noisy(np.random.default_rng(0), 40))
    settings = EvaluationSettings(threshold="sensitivity", target_sensitivity=target, bootstrap=0)
    assert evaluate([model], DATA, metrics("recall"), settings, None, 1)["m"].threshold.value == expected


def test_validation_with_one_class_falls_back_to_the_fixed_threshold_with_a_warning(metrics, tmp_path):
    val = predictions([0.2, 0.6], [1, 1], "v")
    model = ModelPredictions("m", "Model", val, noisy(np.random.default_rng(0), 40))
    settings = EvaluationSettings(threshold="youden", fixed_threshold=0.4, bootstrap=0)
    result = evaluate([model], DATA, metrics("recall"), settings, RunDirectory(tmp_path), 1)
    assert (result["m"].threshold.method, result["m"].threshold.value) == ("fixed", 0.4)
    assert "one class" in result["m"].warnings[0]
    assert "one class" in strict_json(tmp_path / "metrics_m.json")["warnings"][0]


def test_bootstrap_intervals_contain_the_estimate_and_repeat_with_the_seed(metrics):
    names = [*STUDY_METRICS, "specificity", "pr_auc"]
    settings = EvaluationSettings(bootstrap=1000)
    first = evaluate(study_models(), DATA, metrics(*names), settings, None, seed=11)
    again = evaluate(study_models(), DATA, metrics(*names), settings, None, seed=11)
    other = evaluate(study_models(), DATA, metrics(*names), settings, None, seed=12)
    assert first.as_dict() == again.as_dict()
    assert first.as_dict() != other.as_dict()
    for model in first.models:
        assert set(model.estimates) == set(names)
        for estimate in [*model.estimates.values(), *model.calibration.values()]:
            assert estimate.low < estimate.value < estimate.high
            assert estimate.high - estimate.low < 0.25  # 300 test samples give usefully narrow intervals
    wider = evaluate(study_models(), DATA, metrics("accuracy"), EvaluationSettings(confidence=0.99), None, 11)
    assert wider["finetuned"].estimates["accuracy"].low < first["finetuned"].estimates["accuracy"].low


def test_resamples_are_stratified(metrics):
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5)
    counts = stratified_counts(labels, 50, np.random.default_rng(0))
    assert counts.shape == (50, 15)
    for label, size in [(0, 7), (1, 3), (2, 5)]:
        assert (counts[:, labels == label].sum(axis=1) == size).all()
    assert len({row.tobytes() for row in counts}) > 45  # they really differ


def test_a_metric_without_batched_support_is_bootstrapped_one_resample_at_a_time(metrics):
    def plain_accuracy(inputs: MetricInput) -> dict[str, float]:
        decided = np.where(inputs.probabilities[:, 1] >= inputs.threshold, 1, 0)
        return {"plain_accuracy": float((decided == inputs.labels).mean())}

    settings = EvaluationSettings(bootstrap=200)
    result = evaluate(
        study_models(size=80)[:1], DATA, [*metrics("accuracy"), ("plain", plain_accuracy)], settings, None, 5
    )
    vectorised, looped = (
        result["initial"].estimates["accuracy"],
        result["initial"].estimates["plain_accuracy"],
    )
    assert (looped.value, looped.low, looped.high) == pytest.approx(
        (vectorised.value, vectorised.low, vectorised.high)
    )
    assert result["initial"].titles["plain_accuracy"] == "Plain Accuracy"


def test_calibration_against_hand_computed_values():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    labels = np.array([0, 1, 1, 1])
    confidence, outcome = cal.calibration_target(labels, probabilities, positive_index=1)
    # bin 1 holds 0.1, 0.1 with one positive (gap 0.4); bin 9 holds 0.9, 0.9, both positive (gap 0.1)
    assert cal.expected_calibration_error(confidence, outcome, 10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert cal.brier_score(labels, probabilities, 1) == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
    bins = cal.reliability_bins(confidence, outcome, 10)
    assert bins.counts[[1, 9]].tolist() == [2, 2] and bins.observed[1] == 0.5 and np.isnan(bins.observed[0])
    # positive index 0: the same numbers seen from the other class
    assert cal.brier_score(labels, probabilities, 0) == pytest.approx(0.21)


def test_weighted_calibration_equals_calibration_of_the_resampled_rows():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 50)
    probabilities = rng.dirichlet(np.ones(3), 50)
    weights = rng.multinomial(50, np.full(50, 1 / 50), size=4).astype(float)
    confidence, outcome = cal.calibration_target(labels, probabilities, 0)
    ece = cal.weighted_expected_calibration_error(confidence, outcome, 10, weights)
    brier = cal.weighted_brier_score(labels, probabilities, 0, weights)
    for row, row_weights in enumerate(weights):
        rows = np.repeat(np.arange(50), row_weights.astype(int))
        assert ece[row] == pytest.approx(cal.expected_calibration_error(confidence[rows], outcome[rows], 10))
        assert brier[row] == pytest.approx(cal.brier_score(labels[rows], probabilities[rows], 0))
        assert brier[row] == pytest.approx(
            brier_score_loss(labels[rows], probabilities[rows], labels=[0, 1, 2])
        )


def test_artifacts_and_the_console_table(metrics, tmp_path):
    console = Console(record=True, width=220)
    evaluate(
        study_models(),
        DATA,
        metrics(*STUDY_METRICS, "confusion_matrix"),
        EvaluationSettings(),
        RunDirectory(tmp_path),
        42,
        console,
    )
    everything = strict_json(tmp_path / "metrics.json")
    assert everything["positive_class"] == "non-COVID"
    assert everything["bootstrap"]["resamples"] == 1000 and everything["bootstrap"]["seed"] == 42
    assert list(everything["models"]) == ["initial", "finetuned"]
    for key in ("initial", "finetuned"):
        single = strict_json(tmp_path / f"metrics_{key}.json")
        assert single["metrics"] == everything["models"][key]["metrics"]
        assert list(single["metrics"]) == STUDY_METRICS
        assert set(single["calibration"]) == {"ece", "brier"}
        assert single["values"]["confusion_matrix"]["labels"] == list(CLASSES)
        assert sum(map(sum, single["values"]["confusion_matrix"]["matrix"])) == single["test_samples"] == 300
        rows = list(csv.DictReader((tmp_path / f"predictions_{key}.csv").open()))
        assert list(rows[0]) == [
            "file", "sample_id", "true_class", "predicted_class", "positive_class", "threshold",
            "p_COVID", "p_non-COVID",
        ]
        assert len(rows) == 300 and rows[3]["file"] == "/data/img3.png"
        for row in rows:
            assert row["positive_class"] == "non-COVID" and float(row["threshold"]) == 0.5
            assert float(row["p_COVID"]) + float(row["p_non-COVID"]) == pytest.approx(1.0)
            assert row["predicted_class"] == ("non-COVID" if float(row["p_non-COVID"]) >= 0.5 else "COVID")
    text = console.export_text()
    for expected in (
        "Initial Model",
        "Fine-Tuned Model",
        "Accuracy",
        "Precision",
        "Recall",
        "F1 Score",
        "ROC AUC Score",
        "Positive class: 'non-COVID'",
        "threshold 0.500 (fixed)",
        "95% CI",
        "ECE",
        "Brier Score",
    ):
        assert expected in text
    accuracy = everything["models"]["finetuned"]["metrics"]["accuracy"]
    assert (
        f"{accuracy['value']:.3f}" in text and f"{accuracy['ci_low']:.2f}-{accuracy['ci_high']:.2f}" in text
    )


def test_more_than_two_classes_use_the_most_probable_class(metrics, tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 90)
    probabilities = rng.dirichlet(np.ones(3), 90) + np.eye(3)[labels]
    probabilities /= probabilities.sum(1, keepdims=True)
    test = Predictions(tuple(f"s{i}" for i in range(90)), labels, probabilities)
    data = EvaluationData(("a", "b", "c"), "b")
    settings = EvaluationSettings(threshold="youden", bootstrap=100)
    result = evaluate(
        [ModelPredictions("m", "Model", test, test)],
        data,
        metrics("precision", "roc_auc"),
        settings,
        RunDirectory(tmp_path),
        0,
    )
    assert result["m"].threshold.method == "argmax" and result["m"].threshold.value is None
    assert set(result["m"].estimates) == {"precision_macro", "roc_auc_macro"}
    rows = list(csv.DictReader((tmp_path / "predictions_m.csv").open()))
    assert list(rows[0])[-3:] == ["p_a", "p_b", "p_c"]
    assert all(
        r["predicted_class"] == "abc"[int(np.argmax(p))] for r, p in zip(rows, probabilities, strict=True)
    )
    assert all(float(r["p_b"]) == pytest.approx(p[1]) for r, p in zip(rows, probabilities, strict=True))
    assert {r["threshold"] for r in rows} == {""}  # argmax: no threshold


def test_one_class_test_set_records_undefined_auc_without_crashing(metrics, tmp_path):
    test = predictions([0.3, 0.8, 0.9], [1, 1, 1])
    val = predictions([0.2, 0.7], [0, 1], "v")
    result = evaluate(
        [ModelPredictions("m", "Model", val, test)],
        DATA,
        metrics("roc_auc", "recall"),
        EvaluationSettings(bootstrap=100),
        RunDirectory(tmp_path),
        0,
    )
    assert np.isnan(result["m"].estimates["roc_auc"].value)
    written = strict_json(tmp_path / "metrics_m.json")
    assert written["metrics"]["roc_auc"]["value"] is None and written["metrics"]["roc_auc"]["ci_low"] is None
    assert any("ROC AUC" in w for w in written["warnings"])
    assert written["metrics"]["recall"]["value"] == pytest.approx(2 / 3)


def test_non_finite_test_scores_stop_evaluation_with_one_line(metrics, tmp_path):
    models = study_models(size=50)
    broken = models[1].test.probabilities.copy()
    broken[7] = np.nan
    models[1] = ModelPredictions(
        "finetuned",
        "Fine-Tuned Model",
        models[1].val,
        Predictions(models[1].test.sample_ids, models[1].test.labels, broken),
    )
    with pytest.raises(DataError) as error:
        evaluate(models, DATA, metrics("accuracy"), EvaluationSettings(), RunDirectory(tmp_path), 0)
    message = str(error.value)
    assert message.startswith("Fine-Tuned Model, test split:") and "NaN" in message and "\n" not in message
    assert not (tmp_path / "metrics.json").exists()
    val = models[0].val.probabilities.copy()
    val[2] = np.inf
    models[0] = ModelPredictions(
        "initial",
        "Initial Model",
        Predictions(models[0].val.sample_ids, models[0].val.labels, val),
        models[0].test,
    )
    with pytest.raises(
        DataError, match=r"^Initial Model, validation split: 1 of 120 samples have NaN or inf"
    ):
        evaluate(models, DATA, metrics("accuracy"), EvaluationSettings(threshold="youden"), None, 0)


def test_settings_reject_bad_values():
    from pydantic import ValidationError

    for bad in (
        {"threshold": "best"},
        {"bootstrap": -1},
        {"fixed_threshold": 1.5},
        {"confidence": 1.0},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            EvaluationSettings(**bad)


def test_the_metric_plugin_example_in_the_docs_works():
    import re
    import types

    source = (REPO / "docs" / "metrics.md").read_text()
    example = re.findall(r"```python\n(.*?)```", source, re.S)[-1]
    module = types.ModuleType("documented_metric")
    exec(example, module.__dict__)
    registry = build_registry(extra=[module], selection="")
    component = registry.get(Kind.METRIC, "balanced_accuracy")
    models = study_models(size=80)[:1]
    result = evaluate(
        models,
        DATA,
        [("balanced_accuracy", component.factory(component.options(), None))],
        EvaluationSettings(bootstrap=100),
        None,
        0,
    )
    estimate = result["initial"].estimates["balanced_accuracy"]
    assert estimate.low < estimate.value < estimate.high
    assert result["initial"].titles["balanced_accuracy"] == "Balanced Accuracy"


def test_paired_differences_use_the_same_resamples_for_both_models(metrics, tmp_path):
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 2, 200)
    weak = predictions(np.clip(rng.normal(0.5 + 0.1 * (2 * labels - 1), 0.2), 0, 1), labels)
    strong = predictions(np.clip(rng.normal(0.5 + 0.3 * (2 * labels - 1), 0.2), 0, 1), labels)
    models = [
        ModelPredictions("initial", "Initial Model", weak, weak),
        ModelPredictions("finetuned", "Fine-Tuned Model", strong, strong),
    ]
    settings = EvaluationSettings(bootstrap=500)
    result = evaluate(models, DATA, metrics("accuracy", "roc_auc"), settings, RunDirectory(tmp_path), 3)
    (difference,) = result.differences
    assert (difference.model, difference.reference) == ("finetuned", "initial")
    for name in ("accuracy", "roc_auc", "ece", "brier"):
        first = {**result["initial"].estimates, **result["initial"].calibration}[name]
        second = {**result["finetuned"].estimates, **result["finetuned"].calibration}[name]
        assert difference.estimates[name].value == pytest.approx(second.value - first.value)
    auc = difference.estimates["roc_auc"]
    assert 0 < auc.low < auc.value < auc.high  # clearly better, and the paired interval says so
    # paired: narrower than the gap between the two separate intervals would suggest
    separate = (
        result["finetuned"].estimates["roc_auc"].high - result["finetuned"].estimates["roc_auc"].low
    ) + (result["initial"].estimates["roc_auc"].high - result["initial"].estimates["roc_auc"].low)
    assert auc.high - auc.low < separate
    written = strict_json(tmp_path / "metrics.json")["paired_differences"]
    assert written[0]["metrics"]["roc_auc"]["ci_low"] == pytest.approx(auc.low)
    # different test samples: no pairing is possible
    reversed_test = predictions(strong.probabilities[::-1, 1], labels[::-1])
    other = ModelPredictions("other", "Other", strong, reversed_test)
    assert evaluate([models[0], other], DATA, metrics("accuracy"), settings, None, 3).differences == ()
