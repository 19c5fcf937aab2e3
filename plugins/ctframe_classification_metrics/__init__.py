"""Classification metrics for ctframe: threshold metrics, ranking metrics and the confusion matrix.

Each metric takes a :class:`ctframe.MetricInput` and returns named values; each also offers
``batched(inputs, weights)`` so evaluation can bootstrap it over many resamples at once.
Calibration (ECE, Brier score) is computed by ``ctframe.evaluation`` for every model, so it is
not registered here.
"""

from __future__ import annotations

from ctframe import NoOptions, hookimpl

from .options import AveragedOptions, CountOptions
from .ranking import RankingMetric
from .threshold_metrics import Accuracy, ConfusionMatrix, RateMetric

RATE_DESCRIPTIONS = {
    "precision": "precision (positive predictive value): TP / (TP + FP) at the decision threshold",
    "recall": "recall (sensitivity): TP / (TP + FN) at the decision threshold",
    "specificity": "specificity (true negative rate): TN / (TN + FP) at the decision threshold",
    "f1": "F1 score: harmonic mean of precision and recall at the decision threshold",
}

RANKING_DESCRIPTIONS = {
    "roc_auc": "area under the ROC curve of the positive class's score (threshold-free)",
    "pr_auc": "area under the precision-recall curve as average precision (threshold-free)",
}


def _rate_factory(name: str):
    def build(options: CountOptions, context: object = None) -> RateMetric:
        return RateMetric(name, options)

    return build


def _ranking_factory(name: str):
    def build(options: AveragedOptions, context: object = None) -> RankingMetric:
        return RankingMetric(name, options)

    return build


def _accuracy(options: NoOptions, context: object = None) -> Accuracy:
    return Accuracy()


def _confusion_matrix(options: NoOptions, context: object = None) -> ConfusionMatrix:
    return ConfusionMatrix()


@hookimpl
def ctframe_register_metrics(register) -> None:
    register("accuracy", _accuracy, NoOptions, "accuracy: share of test samples classified correctly")
    for name, description in RATE_DESCRIPTIONS.items():
        register(name, _rate_factory(name), CountOptions, description)
    for name, description in RANKING_DESCRIPTIONS.items():
        register(name, _ranking_factory(name), AveragedOptions, description)
    register(
        "confusion_matrix",
        _confusion_matrix,
        NoOptions,
        "confusion matrix: counts of (true, predicted) class pairs",
    )
