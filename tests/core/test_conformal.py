"""Split-conformal prediction sets: finite-sample quantile, per-class coverage on a large exchangeable
synthetic test set, set labels, abstention, and what evaluate writes. Synthetic probabilities in fp64."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from ctframe.base.training import Predictions
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.conformal import ConformalRule, conformal_quantile, fit_conformal, summarise
from ctframe.evaluation.results import ModelPredictions
from ctframe.storage.rundir import RunDirectory

CLASSES = ("a", "b", "c")


def test_the_quantile_has_the_finite_sample_rank():
    scores = np.arange(1, 10) / 10  # 0.1 .. 0.9, n = 9
    assert conformal_quantile(scores, 0.1) == pytest.approx(0.9)  # rank ceil(10 * 0.9) = 9
    assert conformal_quantile(scores, 0.3) == pytest.approx(0.7)  # rank ceil(10 * 0.7) = 7
    assert conformal_quantile(scores[:5], 0.1) == 1.0  # rank 6 > n: every class in every set
    assert conformal_quantile(np.array([]), 0.1) == 1.0


def _draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A model much less sure of class "c" than of "a" and "b": exchangeable samples of one population."""
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    logits = rng.normal(0.0, 1.0, (n, 3))
    logits[np.arange(n), labels] += np.array([3.0, 2.0, 0.5])[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities


def _binomial_band(alpha: float, n_test: int, n_val: int) -> tuple[float, float]:
    """Where 1 - alpha coverage lands on n_test samples: 1 - alpha up to 1 - alpha + 1/(n_val + 1) (the
    conformal guarantee), widened by 4 binomial standard deviations of the test proportion."""
    spread = 4 * math.sqrt(alpha * (1 - alpha) / n_test)
    return 1 - alpha - spread, 1 - alpha + 1 / (n_val + 1) + spread


def test_class_conditional_coverage_holds_per_class_and_marginal_does_not():
    rng = np.random.default_rng(0)
    val_labels, val = _draw(20_000, rng)
    test_labels, test = _draw(20_000, rng)
    alpha = 0.1
    rule = fit_conformal(val_labels, val, CLASSES, alpha, "class_conditional")
    summary = summarise(rule, test_labels, test, 0.95)
    for k, name in enumerate(CLASSES):
        low, high = _binomial_band(alpha, int((test_labels == k).sum()), rule.calibration_counts[k])
        assert low <= summary["per_class"][name]["coverage"]["value"] <= high, name
    # one quantile for all: right on average, well below 1 - alpha on the hard class "c"
    marginal = summarise(fit_conformal(val_labels, val, CLASSES, alpha, "marginal"), test_labels, test, 0.95)
    low, high = _binomial_band(alpha, len(test_labels), len(val_labels))
    assert low <= marginal["coverage"]["value"] <= high
    assert marginal["per_class"]["c"]["coverage"]["value"] < 1 - alpha - 0.05
    rates = (
        summary["abstention_rate"]["value"]
        + summary["empty_rate"]["value"]
        + summary["decided_rate"]["value"]
    )
    assert rates == pytest.approx(1.0)
    assert summary["abstention_rate"]["value"] > 0.05  # the hard class makes sets of two
    decided = summary["accuracy_decided"]
    assert decided["ci_low"] < decided["value"] < decided["ci_high"]
    # abstaining on the doubtful cases: the decided ones are more often right than all argmax answers
    assert decided["value"] > (test.argmax(axis=1) == test_labels).mean() + 0.03


def test_sets_as_text_and_the_record_round_trip():
    rule = ConformalRule(0.1, "class_conditional", ("COVID", "non-COVID"), (0.6, 0.3))
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5], [0.35, 0.65], [0.25, 0.75]])
    # 1 - p <= q: COVID when p >= 0.4, non-COVID when p >= 0.7
    assert rule.labels(probabilities) == ["COVID", "COVID", "", "non-COVID"]
    restored = ConformalRule.from_record(json.loads(json.dumps(rule.record())), rule.class_names)
    assert restored.quantiles == rule.quantiles and restored.alpha == 0.1
    wide = ConformalRule(0.1, "marginal", ("COVID", "non-COVID"), (0.6, 0.6))
    assert wide.labels(probabilities[1:2]) == ["COVID|non-COVID"]


def test_evaluate_writes_the_conformal_block_and_a_set_column(tmp_path):
    rng = np.random.default_rng(1)
    val_labels, val = _draw(300, rng)
    test_labels, test = _draw(300, rng)
    model = ModelPredictions(
        "m",
        "M",
        Predictions(tuple(f"v{i}" for i in range(300)), val_labels, val),
        Predictions(tuple(f"t{i}" for i in range(300)), test_labels, test),
    )
    settings = EvaluationSettings(bootstrap=0, conformal={"alpha": 0.2})
    evaluate([model], EvaluationData(CLASSES, "a"), [], settings, RunDirectory(tmp_path), 0)
    block = json.loads((tmp_path / "metrics.json").read_text())["models"]["m"]["conformal"]
    assert block["alpha"] == 0.2 and block["method"] == "class_conditional"
    assert set(block["quantiles"]) == set(CLASSES) and block["test_samples"] == 300
    with open(tmp_path / "predictions_m.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rule = fit_conformal(val_labels, val, CLASSES, 0.2, "class_conditional")
    assert [row["set"] for row in rows] == rule.labels(test)
    multiple = sum("|" in row["set"] for row in rows) / len(rows)
    assert multiple == pytest.approx(block["abstention_rate"]["value"])


def test_conformal_settings_are_checked():
    with pytest.raises(ValueError, match="alpha"):
        EvaluationSettings(conformal={"alpha": 1.0})
    with pytest.raises(ValueError, match="method"):
        EvaluationSettings(conformal={"alpha": 0.1, "method": "mondrian"})
    assert EvaluationSettings().conformal is None and EvaluationSettings().calibrate == "none"
