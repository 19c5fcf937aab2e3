"""Evaluation of trained models: decision threshold, metrics with bootstrap CIs, calibration, artifacts,
per image and, when the data groups its images (patients), per group.

``evaluate`` is what the engine calls after training; the pieces are importable for plugins
(``predicted_labels`` and ``checked_arrays`` give every metric the same decision rule and input checks).
"""

from ctframe.evaluation.aggregate import Aggregation
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.decision import checked_arrays, predicted_labels
from ctframe.evaluation.pipeline import evaluate
from ctframe.evaluation.results import EvaluationData, EvaluationResult, GroupEvaluation, ModelEvaluation
from ctframe.evaluation.threshold import ThresholdChoice, choose_threshold
from ctframe.registry.settings import EvaluationSettings

__all__ = [
    "Aggregation",
    "Estimate",
    "EvaluationData",
    "EvaluationResult",
    "EvaluationSettings",
    "GroupEvaluation",
    "ModelEvaluation",
    "ThresholdChoice",
    "checked_arrays",
    "choose_threshold",
    "evaluate",
    "predicted_labels",
]
