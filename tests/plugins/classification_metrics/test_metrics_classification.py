"""Classification metric plugins against hand-computed confusion matrices and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from ctframe import DataError, Kind, MetricInput
from ctframe.evaluation.bootstrap import looped
from ctframe.registry.plugins import PLUGINS_ENV, build_registry

BINARY = ("negative", "positive")


@pytest.fixture
def metric(monkeypatch):
    """``metric(name, **options)`` builds a registered metric through the plugin registry."""
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    registry = build_registry()
    assert not registry.broken()

    def build(name: str, **options):
        component = registry.get(Kind.METRIC, name)
        assert component is not None, f"metric {name!r} is not registered"
        return component.factory(component.options(**options), None)

    return build


def two_class(scores, labels, positive_index=1, threshold=0.5) -> MetricInput:
    """Inputs whose ``scores`` are the probability of class index 1."""
    scores = np.asarray(scores, dtype=float)
    return MetricInput(
        np.asarray(labels), np.stack([1 - scores, scores], axis=1), BINARY, positive_index, threshold
    )


# TP=3 (0.9, 0.8, 0.7), FN=2 (0.4, 0.2), FP=1 (0.6), TN=4 (0.1, 0.3, 0.35, 0.45) at threshold 0.5
HAND_SCORES = [0.9, 0.8, 0.7, 0.4, 0.2, 0.6, 0.1, 0.3, 0.35, 0.45]
HAND_LABELS = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_every_metric_is_registered_with_a_description(metric, monkeypatch):
    registry = build_registry(selection="classification_metrics")
    names = set(registry.names(Kind.METRIC))
    expected = {
        "accuracy",
        "precision",
        "recall",
        "specificity",
        "f1",
        "roc_auc",
        "pr_auc",
        "confusion_matrix",
    }
    assert expected <= names
    assert all(registry.get(Kind.METRIC, n).description for n in expected)


def test_binary_metrics_match_a_hand_computed_confusion_matrix(metric):
    inputs = two_class(HAND_SCORES, HAND_LABELS)
    tp, fn, fp, tn = 3, 2, 1, 4
    assert metric("accuracy")(inputs)["accuracy"] == pytest.approx((tp + tn) / 10)
    assert metric("precision")(inputs)["precision"] == pytest.approx(tp / (tp + fp))
    assert metric("recall")(inputs)["recall"] == pytest.approx(tp / (tp + fn))
    assert metric("specificity")(inputs)["specificity"] == pytest.approx(tn / (tn + fp))
    assert metric("f1")(inputs)["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    matrix = metric("confusion_matrix")(inputs)["confusion_matrix"]
    assert matrix["labels"] == list(BINARY)
    assert matrix["matrix"] == [[tn, fp], [fn, tp]]
    # 25 positive/negative pairs: 0.4 loses to 0.6 and 0.45, 0.2 also to 0.3 and 0.35; no ties
    assert sum(n > p for p in [0.9, 0.8, 0.7, 0.4, 0.2] for n in [0.6, 0.1, 0.3, 0.35, 0.45]) == 6
    losses = sum(n > p for p in [0.9, 0.8, 0.7, 0.4, 0.2] for n in [0.6, 0.1, 0.3, 0.35, 0.45])
    assert metric("roc_auc")(inputs)["roc_auc"] == pytest.approx((25 - losses) / 25)
    # precision at each positive, ranked by score: 1/1, 2/2, 3/3, 4/6 (0.4 after 0.6 and 0.45), 5/9
    assert metric("pr_auc")(inputs)["pr_auc"] == pytest.approx((1 + 1 + 1 + 4 / 6 + 5 / 9) / 5)


def test_threshold_moves_the_decision(metric):
    strict = two_class(HAND_SCORES, HAND_LABELS, threshold=0.65)  # predicted positive: 0.9, 0.8, 0.7
    assert metric("precision")(strict)["precision"] == pytest.approx(1.0)
    assert metric("recall")(strict)["recall"] == pytest.approx(3 / 5)
    loose = two_class(HAND_SCORES, HAND_LABELS, threshold=0.15)  # everything but 0.1
    assert metric("recall")(loose)["recall"] == pytest.approx(1.0)
    assert metric("specificity")(loose)["specificity"] == pytest.approx(1 / 5)
    assert metric("roc_auc")(strict)["roc_auc"] == metric("roc_auc")(loose)["roc_auc"]


def test_switching_the_positive_class_swaps_the_roles(metric):
    as_one = two_class(HAND_SCORES, HAND_LABELS, positive_index=1)
    as_zero = two_class(HAND_SCORES, HAND_LABELS, positive_index=0)
    # none of the scores is exactly 0.5, so both readings make the same decisions
    assert metric("confusion_matrix")(as_zero) == metric("confusion_matrix")(as_one)
    assert metric("accuracy")(as_zero)["accuracy"] == metric("accuracy")(as_one)["accuracy"]
    fn, fp, tn = 2, 1, 4  # counted with class 1 positive
    assert metric("precision")(as_zero)["precision"] == pytest.approx(tn / (tn + fn))
    assert metric("recall")(as_zero)["recall"] == pytest.approx(tn / (tn + fp))
    assert metric("recall")(as_zero)["recall"] == metric("specificity")(as_one)["specificity"]
    assert metric("specificity")(as_zero)["specificity"] == metric("recall")(as_one)["recall"]
    assert metric("precision")(as_zero)["precision"] != metric("precision")(as_one)["precision"]
    assert metric("roc_auc")(as_zero)["roc_auc"] == pytest.approx(metric("roc_auc")(as_one)["roc_auc"])


def test_one_class_in_the_true_labels_makes_auc_undefined_not_a_crash(metric):
    inputs = two_class([0.2, 0.7, 0.9], [0, 0, 0])
    for name in ("roc_auc", "pr_auc"):
        values = metric(name)(inputs)
        assert np.isnan(values[name])
        assert any("undefined" in warning and "negative" in warning for warning in values["warnings"])
    recall = metric("recall")(inputs)  # no true positive exists: 0 by the zero_division rule, with a warning
    assert recall["recall"] == 0.0 and recall["warnings"]
    assert metric("specificity")(inputs)["specificity"] == pytest.approx(1 / 3)
    assert metric("accuracy")(inputs)["accuracy"] == pytest.approx(1 / 3)


def test_all_predictions_one_class(metric):
    inputs = two_class([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0])  # nothing predicted positive
    precision = metric("precision")(inputs)
    assert precision["precision"] == 0.0
    assert "no sample was predicted as that class" in precision["warnings"][0]
    assert np.isnan(metric("precision", zero_division="nan")(inputs)["precision"])
    assert metric("precision", zero_division="one")(inputs)["precision"] == 1.0
    assert metric("recall")(inputs)["recall"] == 0.0
    assert "warnings" not in metric("recall")(inputs)  # recall is defined: two true positives exist
    assert metric("specificity")(inputs)["specificity"] == 1.0
    assert metric("f1")(inputs)["f1"] == 0.0
    assert metric("confusion_matrix")(inputs)["confusion_matrix"]["matrix"] == [[2, 0], [2, 0]]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_one_clear_error(metric, bad):
    inputs = two_class([0.1, bad, 0.3], [0, 1, 1])
    for name in ("accuracy", "precision", "roc_auc", "confusion_matrix"):
        with pytest.raises(DataError) as error:
            metric(name)(inputs)
        message = str(error.value)
        assert "\n" not in message and "NaN or infinite" in message and "row 1" in message


def test_malformed_inputs_are_data_errors(metric):
    with pytest.raises(DataError, match="shape"):
        metric("accuracy")(MetricInput(np.array([0, 1]), np.ones((2, 3)) / 3, BINARY, 1))
    with pytest.raises(DataError, match="class indices"):
        metric("accuracy")(MetricInput(np.array([0, 2]), np.full((2, 2), 0.5), BINARY, 1))
    with pytest.raises(DataError, match="empty"):
        metric("accuracy")(MetricInput(np.zeros(0, int), np.zeros((0, 2)), BINARY, 1))


def test_option_values_are_validated(metric):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        metric("precision", average="micro")
    with pytest.raises(ValidationError):
        metric("accuracy", average="macro")


THREE = ("a", "b", "c")
# true a: predicted a, a, b | true b: b, c | true c: c, c, a, b
THREE_LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
THREE_PREDICTED = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1])


def three_class(positive_index: int = 2) -> MetricInput:
    probabilities = np.full((len(THREE_PREDICTED), 3), 0.2)
    probabilities[np.arange(len(THREE_PREDICTED)), THREE_PREDICTED] = 0.6
    probabilities[3, 0] = 0.3  # break ties so the one-vs-rest rankings are not all flat
    probabilities[3, 2] = 0.1
    return MetricInput(THREE_LABELS, probabilities, THREE, positive_index)


def test_multi_class_macro_and_weighted_against_hand_counts(metric):
    inputs = three_class()
    # per class (a, b, c): tp 2,1,2; fp 1,2,1; fn 1,1,2; tn 5,5,4; support 3,2,4
    precision = np.array([2 / 3, 1 / 3, 2 / 3])
    recall = np.array([2 / 3, 1 / 2, 2 / 4])
    specificity = np.array([5 / 6, 5 / 7, 4 / 5])
    support = np.array([3, 2, 4])
    assert metric("precision")(inputs)["precision_macro"] == pytest.approx(precision.mean())
    assert metric("precision", average="weighted")(inputs)["precision_weighted"] == pytest.approx(
        np.average(precision, weights=support)
    )
    assert metric("recall", average="macro")(inputs)["recall_macro"] == pytest.approx(recall.mean())
    assert metric("specificity")(inputs)["specificity_macro"] == pytest.approx(specificity.mean())
    f1 = 2 * precision * recall / (precision + recall)
    assert metric("f1")(inputs)["f1_macro"] == pytest.approx(f1.mean())
    assert metric("accuracy")(inputs)["accuracy"] == pytest.approx(5 / 9)
    # 'binary' on three classes: the positive class (c) against the rest
    assert metric("precision", average="binary")(inputs)["precision"] == pytest.approx(2 / 3)
    assert metric("recall", average="binary")(inputs)["recall"] == pytest.approx(2 / 4)
    matrix = metric("confusion_matrix")(inputs)["confusion_matrix"]["matrix"]
    assert matrix == [[2, 1, 0], [0, 1, 1], [1, 1, 2]]


def test_multi_class_auc_matches_scikit_learn(metric):
    inputs = three_class()
    for average in ("macro", "weighted"):
        expected = skm.roc_auc_score(
            inputs.labels,
            inputs.probabilities / inputs.probabilities.sum(1, keepdims=True),
            multi_class="ovr",
            average=average,
        )
        normalised = MetricInput(
            inputs.labels, inputs.probabilities / inputs.probabilities.sum(1, keepdims=True), THREE, 2
        )
        assert metric("roc_auc", average=average)(normalised)[f"roc_auc_{average}"] == pytest.approx(expected)
        one_hot = np.eye(3)[inputs.labels]
        expected_ap = skm.average_precision_score(one_hot, normalised.probabilities, average=average)
        assert metric("pr_auc", average=average)(normalised)[f"pr_auc_{average}"] == pytest.approx(
            expected_ap
        )


def test_multi_class_auc_with_a_missing_class_is_undefined(metric):
    inputs = three_class()
    keep = inputs.labels != 1
    values = metric("roc_auc")(MetricInput(inputs.labels[keep], inputs.probabilities[keep], THREE, 2))
    assert np.isnan(values["roc_auc_macro"]) and "'b'" in values["warnings"][0]


def random_inputs(rng, size, classes, positive_index, threshold=0.5, ties=True) -> MetricInput:
    labels = rng.integers(0, classes, size)
    logits = rng.normal(size=(size, classes)) + 1.5 * np.eye(classes)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if ties:  # rounded scores produce the ties real models produce on near-duplicate images
        probabilities = np.round(probabilities, 2)
        probabilities /= probabilities.sum(1, keepdims=True)
    names = tuple(f"class{i}" for i in range(classes))
    return MetricInput(labels, probabilities, names, positive_index, threshold)


VECTORISED = [
    ("accuracy", {}),
    ("precision", {}),
    ("recall", {}),
    ("specificity", {}),
    ("f1", {}),
    ("roc_auc", {}),
    ("pr_auc", {}),
    ("precision", {"average": "macro"}),
    ("recall", {"average": "weighted"}),
    ("f1", {"average": "weighted", "zero_division": "nan"}),
    ("specificity", {"average": "weighted"}),
    ("roc_auc", {"average": "weighted"}),
    ("pr_auc", {"average": "macro"}),
]


@pytest.mark.parametrize("classes, positive_index, threshold", [(2, 1, 0.5), (2, 0, 0.3), (3, 1, 0.5)])
@pytest.mark.parametrize("name, options", VECTORISED)
def test_vectorised_resamples_equal_scikit_learn_on_the_resampled_rows(
    metric, name, options, classes, positive_index, threshold
):
    rng = np.random.default_rng(7)
    inputs = random_inputs(rng, 60, classes, positive_index, threshold)
    built = metric(name, **options)
    weights = rng.multinomial(60, np.full(60, 1 / 60), size=12).astype(float)  # 12 plain resamples
    weights[0] = 1.0  # and the sample itself
    batched = built.batched(inputs, weights)
    assert set(batched) <= set(built(inputs)) | {"warnings"}
    one_by_one = looped(built)(inputs, weights)  # scikit-learn on the repeated rows of each resample
    assert set(batched) == set(one_by_one)
    for value_name, values in batched.items():
        assert values.shape == (12,)
        np.testing.assert_allclose(values, one_by_one[value_name], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_vectorised_auc_equals_scikit_learn_with_sample_weights(metric):
    from ctframe_classification_metrics.ranking import weighted_average_precision, weighted_roc_auc

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200).astype(bool)
    scores = np.round(rng.random(200) + 0.3 * truth, 1)  # many ties
    weights = rng.integers(0, 4, size=(5, 200)).astype(float)
    for row in weights:
        assert weighted_roc_auc(truth, scores, row[None])[0] == pytest.approx(
            skm.roc_auc_score(truth, scores, sample_weight=row)
        )
        assert weighted_average_precision(truth, scores, row[None])[0] == pytest.approx(
            skm.average_precision_score(truth, scores, sample_weight=row)
        )
