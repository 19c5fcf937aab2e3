"""Temperature and Platt scaling fitted on validation: lower NLL, unchanged ranking, stored in the model
file and applied by every later prediction (``predict``), and model files without them still load.

Synthetic models are fp64 numpy; the toy run's probabilities are fp32 from the model, written with 8
significant digits.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from ctframe.base.training import Predictions
from ctframe.commands.main import main
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.recalibrate import fit_recalibration, negative_log_likelihood
from ctframe.evaluation.results import ModelPredictions
from ctframe.runtime.recalibration import calibrated_probabilities
from ctframe.storage.rundir import RunDirectory
from tests.core.test_group_predictions import files, toy  # noqa: F401  (fixtures)
from tests.toy.recipe import toy_recipe_text


def _binary(n: int, seed: int, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z); the model says sigmoid(scale * z + shift) for the positive class 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < expit(z)).astype(np.int64)
    positive = expit(scale * z + shift)
    return labels, np.column_stack([1 - positive, positive])


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_an_overconfident_model_gets_lower_nll_and_the_same_ranking(method):
    labels, probabilities = _binary(4000, 0, scale=3.0, shift=0.0)
    fit = fit_recalibration(labels, probabilities, 1, method)
    assert fit.method == method
    assert fit.nll_after < fit.nll_before - 0.05
    if method == "temperature":
        assert fit.parameters["temperature"] == pytest.approx(3.0, rel=0.1)
    # held-out data from the same model: better there too, same AUC
    test_labels, test_probabilities = _binary(4000, 1, scale=3.0, shift=0.0)
    calibrated = fit.apply(test_probabilities, 1)
    assert negative_log_likelihood(test_labels, calibrated) < negative_log_likelihood(
        test_labels, test_probabilities
    )
    auc = roc_auc_score(test_labels, test_probabilities[:, 1])
    assert roc_auc_score(test_labels, calibrated[:, 1]) == pytest.approx(auc, abs=1e-12)
    assert np.allclose(calibrated.sum(axis=1), 1.0)


def test_platt_undoes_a_shift_that_temperature_cannot():
    labels, probabilities = _binary(4000, 2, scale=1.0, shift=2.5)  # nearly every sample called positive
    temperature = fit_recalibration(labels, probabilities, 1, "temperature")
    platt = fit_recalibration(labels, probabilities, 1, "platt")
    assert platt.nll_after < temperature.nll_after - 0.05 and platt.nll_after < platt.nll_before
    assert platt.parameters["shift"] == pytest.approx(-2.5, abs=0.3)
    assert platt.parameters["scale"] == pytest.approx(1.0, abs=0.15)
    auc = roc_auc_score(labels, probabilities[:, 1])
    assert roc_auc_score(labels, platt.apply(probabilities, 1)[:, 1]) == pytest.approx(auc, abs=1e-12)


def test_positive_class_first_is_handled():
    labels, probabilities = _binary(2000, 3, scale=1.0, shift=2.0)
    platt = fit_recalibration(labels, probabilities, 1, "platt")
    flipped = fit_recalibration(1 - labels, probabilities[:, ::-1], 0, "platt")
    assert flipped.parameters["shift"] == pytest.approx(platt.parameters["shift"], abs=1e-4)


def test_more_classes_temperature_and_platt_falls_back():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 1.5, (3000, 3))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in true])
    overconfident = np.exp(4 * logits) / np.exp(4 * logits).sum(axis=1, keepdims=True)
    fit = fit_recalibration(labels, overconfident, 0, "platt")
    assert fit.method == "temperature" and "platt scaling needs two classes" in fit.note
    assert fit.parameters["temperature"] == pytest.approx(4.0, rel=0.15)
    assert fit.nll_after < fit.nll_before
    assert (fit.apply(overconfident, 0).argmax(axis=1) == overconfident.argmax(axis=1)).all()


def test_separable_and_one_class_validation_stay_finite():
    labels = np.array([0] * 50 + [1] * 50)
    positive = np.r_[np.full(50, 0.3), np.full(50, 0.7)]  # perfectly separated: NLL -> 0 as scale grows
    probabilities = np.column_stack([1 - positive, positive])
    for method in ("temperature", "platt"):
        fit = fit_recalibration(labels, probabilities, 1, method)
        assert all(np.isfinite(v) for v in fit.parameters.values())
        assert np.isfinite(fit.apply(probabilities, 1)).all()
    single = fit_recalibration(np.ones(10, dtype=np.int64), probabilities[:10], 1, "platt")
    assert single.method == "none" and "fewer than two classes" in single.note


def test_evaluate_chooses_the_threshold_on_calibrated_validation_and_reports_before_after(tmp_path):
    val_labels, val = _binary(600, 5, scale=1.0, shift=2.5)
    test_labels, test = _binary(600, 6, scale=1.0, shift=2.5)
    predictions = ModelPredictions(
        "m",
        "M",
        Predictions(tuple(f"v{i}" for i in range(600)), val_labels, val),
        Predictions(tuple(f"t{i}" for i in range(600)), test_labels, test),
    )
    settings = EvaluationSettings(calibrate="platt", bootstrap=50)
    run = RunDirectory(tmp_path)
    result = evaluate([predictions], EvaluationData(("neg", "pos"), "pos"), [], settings, run, 0)
    model = result["m"]
    block = json.loads((tmp_path / "metrics.json").read_text())["models"]["m"]["calibration_fit"]
    assert block["method"] == "platt" and block["validation_nll"]["after"] < block["validation_nll"]["before"]
    for name in ("ece", "brier", "nll"):
        after, before = block["test"]["after"][name], block["test"]["before"][name]
        assert after["value"] < before["value"] and after["ci_low"] <= after["value"] <= after["ci_high"]
    # the reported calibration is on the recalibrated probabilities
    assert model.calibration["ece"].value == pytest.approx(block["test"]["after"]["ece"]["value"])
    with open(tmp_path / "predictions_m.csv", newline="") as handle:
        written = np.array([float(row["p_pos"]) for row in csv.DictReader(handle)])
    assert written == pytest.approx(model.recalibration.apply(test, 1)[:, 1], abs=1e-7)


# ------------------------------------------------------------------- stored and applied by predict


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(toy, tmp_path_factory) -> Path:  # noqa: F811
    folder = tmp_path_factory.mktemp("calibrated-run")
    recipe = folder / "toy.toml"
    conformal = {"alpha": 0.2}
    recipe.write_text(
        toy_recipe_text(trainer={"epochs": 3}, evaluation={"bootstrap": 0, "conformal": conformal})
    )
    command = ["run", str(recipe), "--output", str(folder / "runs"), "--set", "evaluation.calibrate=platt"]
    assert main(command) == 0
    (path,) = (folder / "runs").iterdir()
    return path


def test_predict_applies_the_stored_calibration_and_sets(run, files, tmp_path):  # noqa: F811
    images, _ = files
    stored = json.loads((run / "models" / "toy.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["models"]["toy"]
    calibration = stored["calibration"]
    assert calibration["method"] == "platt"
    assert calibration["scale"] == metrics["calibration_fit"]["parameters"]["scale"]
    assert (calibration["scale"], calibration["shift"]) != pytest.approx((1.0, 0.0), abs=1e-3)
    assert set(stored["conformal"]["quantiles"]) == {"dark", "bright"}
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(images), "-o", str(out)]) == 0
    predicted, ran = _rows(out), _rows(run / "predictions_toy.csv")
    assert "set" in predicted[0] and "set" in ran[0]
    # the same 32 test images as the run's test split: the same calibrated probabilities and sets (fp32)
    mine = sorted((float(row["p_bright"]), row["set"]) for row in predicted)
    theirs = sorted((float(row["p_bright"]), row["set"]) for row in ran)
    assert [p for p, _ in mine] == pytest.approx([p for p, _ in theirs], abs=1e-6)
    assert [s for _, s in mine] == [s for _, s in theirs]


def test_a_model_file_without_calibration_predicts_raw_probabilities(run, files, tmp_path):  # noqa: F811
    images, _ = files
    old = tmp_path / "old"
    shutil.copytree(run / "models", old)
    record = json.loads((old / "toy.json").read_text())
    calibration = record.pop("calibration")
    record.pop("conformal")
    record["format_version"] = 1  # as ctframe wrote it then: no integrity block either
    del record["integrity"]
    (old / "toy.json").write_text(json.dumps(record))
    out = tmp_path / "old.csv"
    assert main(["predict", str(old / "toy.json"), str(images), "-o", str(out)]) == 0
    raw = _rows(out)
    assert "set" not in raw[0]
    probabilities = np.array([[float(row["p_dark"]), float(row["p_bright"])] for row in raw])
    calibrated = calibrated_probabilities(probabilities, calibration, 1)
    assert main(["predict", str(run), str(images), "-o", str(tmp_path / "new.csv")]) == 0
    # same files, same order: the stored model's answers are these raw ones recalibrated
    expected = np.array([float(row["p_bright"]) for row in _rows(tmp_path / "new.csv")])
    assert calibrated[:, 1] == pytest.approx(expected, abs=1e-6)


def test_evaluate_applies_the_stored_calibration_and_conformal_rule(run, files):  # noqa: F811
    images, _ = files
    assert main(["evaluate", str(run), "--data", str(images), "--name", "ext"]) == 0
    external = run / "external" / "ext"
    model = json.loads((external / "metrics.json").read_text())["models"]["toy"]
    stored = json.loads((run / "models" / "toy.json").read_text())
    assert model["conformal"]["quantiles"] == pytest.approx(stored["conformal"]["quantiles"])  # not refitted
    rows, ran = _rows(external / "predictions_toy.csv"), _rows(run / "predictions_toy.csv")
    assert "set" in rows[0]
    # the same 32 test images: the run's calibrated probabilities and sets come back (fp32)
    mine = sorted((float(row["p_bright"]), row["set"]) for row in rows)
    theirs = sorted((float(row["p_bright"]), row["set"]) for row in ran)
    assert [p for p, _ in mine] == pytest.approx([p for p, _ in theirs], abs=1e-6)
    assert [s for _, s in mine] == [s for _, s in theirs]


def test_the_report_shows_recalibration_and_conformal_coverage(run):  # noqa: F811
    page = (run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((run / "metrics.json").read_text())["models"]["toy"]
    assert 'id="uncertainty"' in page and "<h3>Recalibration</h3>" in page and "platt (scale " in page
    after = metrics["calibration_fit"]["test"]["after"]["nll"]["value"]
    assert f"→ {after:.3f}" in page
    assert "<h3>Conformal prediction sets</h3>" in page and "Coverage dark" in page
    coverage = metrics["conformal"]["per_class"]["dark"]["coverage"]
    assert f"[{coverage['count']}/{coverage['n']}]" in page


def test_an_onnx_export_with_decision_answers_as_predict(run, files, tmp_path, monkeypatch):  # noqa: F811
    import onnxruntime

    from ctframe.base.filenames import unescape_name
    from ctframe.registry.plugins import PLUGINS_ENV

    images, _ = files
    monkeypatch.setenv(PLUGINS_ENV, "toy,export")
    exported = tmp_path / "model.onnx"
    arguments = ["export", str(run), "-f", "onnx", "-o", str(exported), "--decision", "--images", str(images)]
    assert main(arguments) == 0
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert list(sidecar["extra_outputs"]) == ["decision", "set"]
    stored = json.loads((run / "models" / "toy.json").read_text())
    rates = stored["validation_rates"]  # what the threshold reached on (recalibrated) validation
    assert sidecar["operating_point"]["validation_rates"] == rates
    assert rates["threshold"] == stored["threshold"] and rates["sensitivity"]["n"] == 16
    assert rates["specificity"]["n"] == 16
    sensitivity = rates["sensitivity"]
    assert 0 <= sensitivity["ci_low"] <= sensitivity["value"] <= sensitivity["ci_high"] <= 1
    assert main(["predict", str(run), str(images), "-o", str(tmp_path / "p.csv")]) == 0
    rows = _rows(tmp_path / "p.csv")
    batch = np.stack([np.load(unescape_name(row["file"])) for row in rows]).astype(np.uint8)
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "decision", "set"]
    probabilities, decision, sets = session.run(None, {"images": batch})
    classes = ["dark", "bright"]
    # the exported file decides as ctframe predict does: same probabilities (fp32), decisions and sets
    expected = np.array([[float(row["p_dark"]), float(row["p_bright"])] for row in rows])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert [classes[i] for i in decision] == [row["predicted_class"] for row in rows]
    assert ["|".join(c for c, inside in zip(classes, s, strict=True) if inside) for s in sets] == [
        row["set"] for row in rows
    ]
