"""Image probabilities to one per group: each aggregation against hand-computed values (fp64), the rule
for two and for more classes, and a group holding two true classes."""

from __future__ import annotations

import numpy as np
import pytest

from ctframe import DataError, Predictions
from ctframe.evaluation.aggregate import Aggregation, aggregate, group_predictions, plural
from ctframe.registry.settings import EvaluationSettings

# Groups given out of order: "a" has four images, "b" one, "c" two.
SCORES = np.array([0.4, 0.9, 0.1, 0.5, 0.7, 0.5, 0.2])
GROUPS = np.array(["a", "b", "a", "c", "a", "c", "a"])


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (Aggregation("mean"), [1.4 / 4, 0.9, 0.5]),
        (Aggregation("max"), [0.7, 0.9, 0.5]),
        (Aggregation("topk_mean", k=2), [(0.7 + 0.4) / 2, 0.9, 0.5]),  # k above a group's size: all of it
        (Aggregation("topk_mean", k=1), [0.7, 0.9, 0.5]),
        (Aggregation("quantile", quantile=0.9), [0.4 + 0.7 * (0.7 - 0.4), 0.9, 0.5]),  # sorted a: .1 .2 .4 .7
        (Aggregation("quantile", quantile=0.5), [(0.2 + 0.4) / 2, 0.9, 0.5]),
        (Aggregation("quantile", quantile=0.0), [0.1, 0.9, 0.5]),
        (Aggregation("noisy_or"), [1 - 0.6 * 0.9 * 0.3 * 0.8, 0.9, 1 - 0.5 * 0.5]),
    ],
)
def test_each_aggregation_against_hand_computed_values(how, expected):
    ids, values, counts = aggregate(SCORES, GROUPS, how)
    assert ids.tolist() == ["a", "b", "c"]  # sorted group ids
    assert counts.tolist() == [4, 1, 2]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=0)


def test_noisy_or_is_exact_for_tiny_probabilities_and_one_for_a_certain_image():
    # 1 - (1 - 1e-20)^3 is 0 when computed naively in fp64; log1p / expm1 keep it: 3e-20.
    ids, values, _ = aggregate(
        np.array([1e-20, 1e-20, 1e-20, 1.0, 0.3]), ["t", "t", "t", "s", "s"], Aggregation("noisy_or")
    )
    assert ids.tolist() == ["s", "t"]
    assert values[0] == 1.0
    assert values[1] == pytest.approx(3e-20, rel=1e-12)


def test_settings_choose_the_aggregation_and_describe_it():
    settings = EvaluationSettings(aggregate="topk_mean", aggregate_k=3)
    how = Aggregation.from_settings(settings)
    assert how == Aggregation("topk_mean", 3, 0.9)
    assert how.as_dict() == {"method": "topk_mean", "k": 3}
    assert how.describe() == "mean of the 3 highest images"
    assert Aggregation().as_dict() == {"method": "mean"}
    assert EvaluationSettings().aggregate == "mean"  # the default
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        Aggregation("median")
    with pytest.raises(ValueError):
        EvaluationSettings(aggregate_quantile=1.5)
    with pytest.raises(ValueError):
        EvaluationSettings(aggregate_k=0)


def test_two_classes_aggregate_the_positive_class_and_complement_it():
    # positive class at index 0 this time: the complement goes to column 1
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    predictions = Predictions(("x", "y", "z"), np.array([0, 0, 1]), probabilities)
    grouped = group_predictions(predictions, np.array(["p", "p", "q"]), 0, Aggregation("max"))
    assert grouped.predictions.sample_ids == ("p", "q")
    assert grouped.predictions.labels.tolist() == [0, 1]
    assert grouped.counts.tolist() == [2, 1]
    np.testing.assert_allclose(grouped.predictions.probabilities, [[0.9, 0.1], [0.6, 0.4]], rtol=1e-12)


def test_more_classes_aggregate_every_column_and_renormalise():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]])
    predictions = Predictions(("x", "y", "z"), np.array([2, 2, 1]), probabilities)
    groups = np.array(["p", "p", "q"])
    by_max = group_predictions(predictions, groups, 0, Aggregation("max")).predictions
    # p: column maxima 0.6, 0.3, 0.6 sum to 1.5
    np.testing.assert_allclose(by_max.probabilities, [[0.4, 0.2, 0.4], [0.1, 0.8, 0.1]], rtol=1e-12)
    by_mean = group_predictions(predictions, groups, 0, Aggregation("mean")).predictions
    np.testing.assert_allclose(by_mean.probabilities[0], [0.4, 0.25, 0.35], rtol=1e-12)  # unchanged
    assert by_mean.labels.tolist() == [2, 1]
    # The 0 quantile of images that each rule out a different class: no evidence left, uniform.
    eye = Predictions(("u", "v", "w"), np.array([0, 0, 0]), np.eye(3))
    lowest = group_predictions(eye, np.array(["g"] * 3), 0, Aggregation("quantile", quantile=0.0))
    np.testing.assert_allclose(lowest.predictions.probabilities, [[1 / 3, 1 / 3, 1 / 3]], rtol=1e-12)


def test_a_group_with_two_true_classes_is_an_error_naming_how_many():
    probabilities = np.full((5, 2), 0.5)
    predictions = Predictions(tuple("vwxyz"), np.array([0, 1, 0, 1, 1]), probabilities)
    with pytest.raises(DataError, match=r"^2 group\(s\) hold images of more than one true class \(p, q\);"):
        group_predictions(predictions, np.array(["p", "p", "q", "q", "r"]), 1, Aggregation())


def test_plural_of_units():
    assert [plural(u) for u in ("patient", "study", "series", "sequence", "group")] == [
        "patients",
        "studies",
        "series",
        "sequences",
        "groups",
    ]
