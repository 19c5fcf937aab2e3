"""The group-level answer: a model's predictions aggregated per group (patient, study, series), decided at a
threshold chosen on the validation split's groups, scored with intervals that resample groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctframe.base.contracts import Metric, MetricInput
from ctframe.base.errors import DataError
from ctframe.base.training import Predictions
from ctframe.evaluation import calibration
from ctframe.evaluation.aggregate import Aggregation, GroupedPredictions, group_predictions
from ctframe.evaluation.bootstrap import sample_groups
from ctframe.evaluation.decision import predicted_labels
from ctframe.evaluation.results import EvaluationData, GroupEvaluation, ModelPredictions
from ctframe.evaluation.scores import score
from ctframe.evaluation.threshold import ThresholdChoice, choose_threshold
from ctframe.registry.settings import EvaluationSettings


def grouped(
    predictions: Predictions, data: EvaluationData, how: Aggregation, where: str
) -> GroupedPredictions:
    """``predictions`` aggregated per group of ``data.groups``; errors name ``where`` they arose."""
    try:
        groups = sample_groups(predictions.sample_ids, data.groups)
    except ValueError as error:
        raise DataError(f"{where}: {error}; the dataset must give every sample a group") from None
    try:
        return group_predictions(predictions, np.asarray(groups), data.positive_index, how)
    except DataError as error:
        raise DataError(f"{where}: {error}") from None


def group_threshold(
    trained: ModelPredictions,
    val: GroupedPredictions | None,
    data: EvaluationData,
    settings: EvaluationSettings,
) -> ThresholdChoice:
    """The model's fixed group threshold, or the one ``settings.group_threshold`` chooses on the
    validation groups (never on test), falling back to ``fixed_threshold`` with a note as images do."""
    if trained.group_threshold is not None:
        return trained.group_threshold
    wanted = settings.model_copy(update={"threshold": settings.group_threshold})
    chosen_on = None if val is None else val.predictions
    return choose_threshold(chosen_on, data.positive_index, len(data.class_names), wanted)


def _confusion(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> dict[str, object]:
    classes = len(class_names)
    matrix = np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    return {
        "labels": list(class_names),
        "rows": "true class",
        "columns": "predicted class",
        "matrix": matrix.tolist(),
    }


def evaluate_groups(
    trained: ModelPredictions,
    data: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    settings: EvaluationSettings,
    seed: int,
) -> GroupEvaluation | None:
    """One model's group-level evaluation, or ``None`` when the data has no groups. A stored model
    brings its own aggregation and threshold (``trained.aggregation``, ``trained.group_threshold``).

    The bootstrap draws groups with replacement within each true class: on group-level arrays the plain
    stratified bootstrap is the group bootstrap, each group one unit however many images it holds.
    """
    if not data.groups:
        return None
    how = trained.aggregation or Aggregation.from_settings(settings)
    where = f"{trained.title}, per {data.group_unit}"
    val = None
    if trained.val is not None and len(trained.val.labels) > 0:
        val = grouped(trained.val, data, how, f"{where}, validation split")
    test = grouped(trained.test, data, how, f"{where}, test split")
    threshold = group_threshold(trained, val, data, settings)
    value = 0.5 if threshold.value is None else threshold.value
    positive = data.positive_index
    inputs = MetricInput(
        test.predictions.labels, test.predictions.probabilities, data.class_names, positive, value
    )
    scores = score(f"{where}, test split", metrics, inputs, settings, seed)
    warnings = ([threshold.note] if threshold.note else []) + scores.warnings
    labels, probabilities = scores.inputs.labels, scores.inputs.probabilities
    predicted = predicted_labels(probabilities, positive, value)
    confidence, outcome = calibration.calibration_target(labels, probabilities, positive)
    bins = calibration.reliability_bins(confidence, outcome, settings.calibration_bins)
    counts = np.bincount(labels, minlength=len(data.class_names))
    return GroupEvaluation(
        unit=data.group_unit,
        aggregation=how,
        threshold=threshold,
        estimates=scores.estimates,
        titles=scores.titles,
        calibration=scores.calibration,
        confusion=_confusion(labels, predicted, data.class_names),
        reliability={
            "edges": bins.edges,
            "counts": bins.counts.astype(np.int64),
            "mean_predicted": bins.mean_predicted,
            "observed": bins.observed,
        },
        images_per_group={
            "min": int(test.counts.min()),
            "median": float(np.median(test.counts)),
            "max": int(test.counts.max()),
        },
        values=scores.values,
        warnings=tuple(warnings),
        groups=len(labels),
        class_counts={name: int(n) for name, n in zip(data.class_names, counts, strict=True)},
    )
