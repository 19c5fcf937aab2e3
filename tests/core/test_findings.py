"""Findings (issue 25, item 3): each rule fires on the pattern it names and stays quiet on its near miss;
evaluate() writes them to metrics.json and the console, the report shows them first. Probabilities are
fp64 numpy; no model is trained."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import roc_auc_score

from ctframe import Predictions
from ctframe.base.contracts import MetricInput
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.findings import model_findings, roc_auc, unique, worse_than_before
from ctframe.evaluation.paired import PairedDifference
from ctframe.evaluation.results import ModelPredictions
from ctframe.evaluation.threshold import ThresholdChoice
from ctframe.report import build_report
from ctframe.storage.rundir import RunDirectory

NAMES = ("COVID", "non-COVID")
POSITIVE = 1


def _predictions(labels, positive_probabilities, prefix="s") -> Predictions:
    labels = np.asarray(labels)
    p = np.asarray(positive_probabilities, dtype=np.float64)
    return Predictions(
        tuple(f"{prefix}{i}" for i in range(len(labels))), labels, np.stack([1 - p, p], axis=1)
    )


def _balanced(n=100, seed=0, separation=0.3, centre=0.5):
    """Two classes, positive scores ``separation`` above negative ones around ``centre``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    scores = np.clip(centre + (labels - 0.5) * separation + rng.normal(0, 0.05, n), 0.001, 0.999)
    return labels, scores


def _findings(test, threshold, val=None):
    scores = test.probabilities[:, POSITIVE]
    predicted = np.where(scores >= threshold, POSITIVE, 1 - POSITIVE)
    return model_findings("m", "Model", test, val, predicted, threshold, NAMES, POSITIVE)


def test_roc_auc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.uniform(size=300), 1)  # many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(np.ones(5, dtype=int), scores[:5]) is None


@pytest.mark.parametrize(
    "case, centre, threshold, codes, words",
    [
        ("ranking good, threshold below every score", 0.8, 0.5, ["one_class"], ["ranking is good", "youden"]),
        ("ranking good, threshold above every score", 0.2, 0.5, ["one_class"], ["ranking is good"]),
        (
            "threshold off but both classes predicted",
            0.68,
            0.5,
            ["threshold_off"],
            ["within reach", "youden"],
        ),
        ("well placed threshold", 0.5, 0.5, [], []),
    ],
)
def test_one_class_and_threshold_rules(case, centre, threshold, codes, words):
    labels, scores = _balanced(centre=centre)
    found = _findings(_predictions(labels, scores), threshold)
    assert [f.code for f in found] == codes, case
    for word in words:
        assert word in found[0].message, found[0].message


def test_a_model_that_learnt_nothing_is_told_apart_from_a_bad_threshold():
    rng = np.random.default_rng(1)
    labels = np.arange(100) % 2
    scores = rng.uniform(0.6, 0.9, 100)  # unrelated to the labels, all above 0.5
    (finding,) = _findings(_predictions(labels, scores), 0.5)
    assert finding.code == "one_class" and "does not separate" in finding.message
    assert "100%" in finding.message and "non-COVID" in finding.message


def test_a_skewed_test_set_predicted_mostly_as_its_majority_is_no_finding():
    labels = np.array([0] * 90 + [1] * 10)
    scores = np.where(labels == 1, 0.7, 0.2)
    scores[:6] = 0.7  # 16 % predicted positive on a 10 % positive set: fine
    assert _findings(_predictions(labels, scores), 0.5) == []


def test_small_validation_is_said_once_for_all_models():
    labels, scores = _balanced()
    test = _predictions(labels, scores)
    val = _predictions([0, 1] * 4, [0.3, 0.7] * 4, "v")
    found = _findings(test, 0.5, val) + _findings(test, 0.5, val)
    kept = unique(found)
    assert [f.code for f in kept] == ["small_validation"]
    assert "4 COVID" in kept[0].message and kept[0].model is None
    assert _findings(test, 0.5, _predictions([0, 1] * 10, [0.3, 0.7] * 10, "v")) == []


def _difference(**estimates: Estimate) -> PairedDifference:
    return PairedDifference("finetuned", "initial", "Fine-Tuned - Initial", estimates, {})


TITLES = {"finetuned": "Fine-Tuned Model", "initial": "Initial Model"}


@pytest.mark.parametrize(
    "estimates, fires",
    [
        ({"accuracy": Estimate(-0.10, -0.18, -0.02)}, True),
        ({"accuracy": Estimate(-0.10, -0.20, 0.01)}, False),  # the interval reaches zero
        ({"accuracy": Estimate(-0.06)}, True),  # no interval: by the point value
        ({"accuracy": Estimate(-0.03)}, False),
        ({"ece": Estimate(0.10, 0.05, 0.15)}, False),  # lower is better: a rise in ECE is not "worse" here
        ({"roc_auc": Estimate(0.02, 0.01, 0.03), "recall": Estimate(-0.3, -0.4, -0.2)}, True),
    ],
)
def test_worse_than_before(estimates, fires):
    found = worse_than_before([_difference(**estimates)], TITLES)
    assert bool(found) == fires
    if fires:
        assert found[0].message.startswith("Fine-Tuned Model is worse than Initial Model")


def _accuracy(inputs: MetricInput) -> dict[str, float]:
    decided = np.where(inputs.probabilities[:, inputs.positive_index] >= inputs.threshold, 1, 0)
    return {"accuracy": float(np.mean(decided == inputs.labels))}


def test_evaluate_writes_findings_and_the_report_shows_them_first(tmp_path):
    labels, scores = _balanced(centre=0.8)
    test = _predictions(labels, scores)
    val = _predictions([0, 1] * 3, [0.3, 0.9] * 3, "v")
    model = ModelPredictions("initial", "Initial Model", val, test, threshold=ThresholdChoice("fixed", 0.5))
    out = io.StringIO()
    console = Console(file=out, width=400)
    run = RunDirectory(tmp_path)
    data = EvaluationData(NAMES, "non-COVID")
    result = evaluate(
        [model], data, [("accuracy", _accuracy)], EvaluationSettings(bootstrap=0), run, 0, console
    )
    assert [f.code for f in result.findings] == ["one_class", "small_validation"]
    written = json.loads((tmp_path / "metrics.json").read_text())["findings"]
    assert [f["code"] for f in written] == ["one_class", "small_validation"]
    assert 'threshold = "youden"' in out.getvalue()  # rich markup left as text
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert page.index('id="findings"') < page.index('id="overview"')
    assert "2 finding(s)" in page and "threshold = &quot;youden&quot;" in page
