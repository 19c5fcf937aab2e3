"""Evaluation of trained models: decision threshold, metrics with bootstrap CIs, calibration, artifacts.

``evaluate`` is what the engine calls after training; the pieces are importable for plugins
(``predicted_labels`` and ``checked_arrays`` give every metric the same decision rule and input checks).
"""

from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.decision import checked_arrays, predicted_labels
from ctframe.evaluation.pipeline import evaluate
from ctframe.evaluation.results import EvaluationData, EvaluationResult, ModelEvaluation
from ctframe.evaluation.threshold import ThresholdChoice, choose_threshold
from ctframe.registry.settings import EvaluationSettings

__all__ = [
    "Estimate",
    "EvaluationData",
    "EvaluationResult",
    "EvaluationSettings",
    "ModelEvaluation",
    "ThresholdChoice",
    "checked_arrays",
    "choose_threshold",
    "evaluate",
    "predicted_labels",
]
