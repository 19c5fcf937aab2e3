"""``evaluate``: threshold on validation, metrics with bootstrap CIs on test, artifacts and a table."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.markup import escape

from ctframe.base.contracts import Metric, MetricInput
from ctframe.base.errors import CtframeError, DataError
from ctframe.base.training import Predictions
from ctframe.evaluation.aggregate import plural
from ctframe.evaluation.bootstrap import sample_groups
from ctframe.evaluation.conformal import summarise
from ctframe.evaluation.decision import predicted_labels
from ctframe.evaluation.findings import Finding, model_findings, unique, worse_than_before
from ctframe.evaluation.group_level import evaluate_groups
from ctframe.evaluation.group_outputs import answer_groups, write_group_predictions_csv
from ctframe.evaluation.outputs import (
    calibration_table,
    group_calibration_table,
    group_metrics_table,
    metrics_table,
    write_metrics,
    write_predictions,
)
from ctframe.evaluation.paired import paired_differences
from ctframe.evaluation.results import (
    EvaluationData,
    EvaluationResult,
    GroupEvaluation,
    ModelEvaluation,
    ModelPredictions,
)
from ctframe.evaluation.scores import WARNINGS_KEY, score
from ctframe.evaluation.threshold import ThresholdChoice, choose_threshold
from ctframe.evaluation.uncertainty import (
    calibrate_model,
    calibration_before_after,
    calibration_fit_table,
    conformal_rule,
    conformal_table,
    with_recalibration,
)
from ctframe.registry.settings import EvaluationSettings
from ctframe.storage.layout import GROUP_PREDICTIONS, unit_in_names
from ctframe.storage.rundir import RunDirectory

logger = logging.getLogger("ctframe.evaluation")

__all__ = ["WARNINGS_KEY", "bootstrap_method", "evaluate", "evaluate_model"]


def _groups(test: Predictions, data: EvaluationData) -> np.ndarray | None:
    try:
        return sample_groups(test.sample_ids, data.groups)
    except ValueError as error:
        raise DataError(f"cluster bootstrap: {error}; the dataset must give every sample a group") from None


def bootstrap_method(data: EvaluationData) -> str:
    if data.groups:
        return "stratified cluster bootstrap (whole groups resampled: one group's images are not independent)"
    return f"stratified bootstrap of {plural(data.sample_unit)}"


def _write_group_predictions(
    run_dir: RunDirectory, model: ModelPredictions, group: GroupEvaluation, data: EvaluationData
) -> None:
    """Model ``model.key``'s test groups as ``predictions_<key>_<unit>.csv``, decided at its group
    threshold: the same aggregation the group-level metrics scored."""
    groups = _groups(model.test, data)
    answers = answer_groups(
        model.test, groups, data.positive_index, group.aggregation, group.threshold.value, group.unit
    )
    path = GROUP_PREDICTIONS.path(run_dir, model.key, unit=unit_in_names(group.unit))
    write_group_predictions_csv(path, answers, data.class_names, data.positive_class, labelled=True)


def _threshold(
    trained: ModelPredictions, data: EvaluationData, settings: EvaluationSettings
) -> ThresholdChoice:
    """The model's fixed threshold, or the one the settings choose on its validation predictions."""
    if trained.threshold is not None:
        return trained.threshold
    if trained.val is None:
        raise ValueError(f"{trained.title}: neither validation predictions nor a threshold to use")
    try:
        return choose_threshold(trained.val, data.positive_index, len(data.class_names), settings)
    except CtframeError as error:
        raise type(error)(f"{trained.title}, {error}") from None


def evaluate_model(
    trained: ModelPredictions,
    data: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    settings: EvaluationSettings,
    seed: int,
) -> tuple[ModelEvaluation, np.ndarray, dict[str, np.ndarray]]:
    """One model's evaluation (per image, and per group when the data has groups), its predicted test
    labels and its resampled values. With ``settings.calibrate``, everything from the threshold on uses
    probabilities recalibrated on validation; with ``settings.conformal``, test gets prediction sets."""
    positive = data.positive_index
    raw_test = trained.test
    trained, recalibration = calibrate_model(trained, data, settings)
    conformal = conformal_rule(trained, data, settings)
    threshold = _threshold(trained, data, settings)
    test = trained.test
    inputs = MetricInput(
        test.labels,
        test.probabilities,
        data.class_names,
        positive,
        0.5 if threshold.value is None else threshold.value,
    )
    groups = _groups(test, data) if settings.bootstrap else None
    scores = score(f"{trained.title}, test split", metrics, inputs, settings, seed, groups)
    notes = [threshold.note, None if recalibration is None else recalibration.note]
    warnings = [note for note in notes if note] + scores.warnings
    for message in warnings:
        logger.warning("%s: %s", trained.title, message)
    group = evaluate_groups(trained, data, metrics, settings, seed)
    if group is not None:
        for message in group.warnings:
            logger.warning("%s, per %s: %s", trained.title, group.unit, message)
    labels, probabilities = scores.inputs.labels, scores.inputs.probabilities
    before_after = {}
    if recalibration is not None and recalibration.method != "none":
        raw = np.asarray(raw_test.probabilities, dtype=np.float64)
        before_after = calibration_before_after(labels, raw, probabilities, positive, settings, seed, groups)
    summary = {} if conformal is None else summarise(conformal, labels, probabilities, settings.confidence)
    counts = np.bincount(labels, minlength=len(data.class_names))
    evaluation = ModelEvaluation(
        key=trained.key,
        title=trained.title,
        threshold=threshold,
        estimates=scores.estimates,
        titles=scores.titles,
        calibration=scores.calibration,
        values=scores.values,
        warnings=tuple(warnings),
        samples=len(labels),
        class_counts={name: int(n) for name, n in zip(data.class_names, counts, strict=True)},
        group=group,
        recalibration=recalibration,
        calibration_test=before_after,
        conformal=conformal,
        conformal_summary=summary,
    )
    return evaluation, predicted_labels(probabilities, positive, inputs.threshold), scores.resampled


# seven inputs of seven kinds, passed positionally by every workflow, test and benchmark that evaluates
def evaluate(
    trained: Sequence[ModelPredictions],
    data_info: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    settings: EvaluationSettings,
    run_dir: RunDirectory | None,
    seed: int,
    console: Console | None = None,
) -> EvaluationResult:
    """Evaluate every trained model on its test predictions.

    The threshold is chosen on each model's validation predictions (when the settings ask for it)
    and applied unchanged to test. Every scalar metric and the calibration scores get stratified
    bootstrap CIs from the same seeded resamples, so models tested on the same samples are compared
    on identical resamples: each later model's paired difference to the first gets its own CI.
    When ``data_info`` has groups, each model is also evaluated per group (``ModelEvaluation.group``:
    aggregated probabilities, a threshold chosen on validation groups, intervals over groups).
    Writes ``predictions_<key>.csv`` (and with groups ``predictions_<key>_<unit>.csv``),
    ``metrics_<key>.json`` and ``metrics.json`` when ``run_dir`` is given, and prints the metrics table
    when ``console`` is given.
    """
    evaluations: list[ModelEvaluation] = []
    resampled: list[dict[str, np.ndarray]] = []
    found: list[Finding] = []
    for model in trained:
        evaluation, predicted, samples = evaluate_model(model, data_info, metrics, settings, seed)
        evaluations.append(evaluation)
        resampled.append(samples)
        model = with_recalibration(model, evaluation.recalibration, data_info.positive_index)
        found += model_findings(
            model.key,
            model.title,
            model.test,
            model.val,
            predicted,
            evaluation.threshold.value,
            data_info.class_names,
            data_info.positive_index,
        )
        if run_dir is not None:
            threshold = evaluation.threshold.value
            sets = (
                None
                if evaluation.conformal is None
                else evaluation.conformal.labels(model.test.probabilities)
            )
            write_predictions(run_dir, model.key, model.test, predicted, data_info, threshold, sets)
            if evaluation.group is not None:
                _write_group_predictions(run_dir, model, evaluation.group, data_info)
    differences = paired_differences(trained, evaluations, resampled, settings)
    found += worse_than_before(differences, {e.key: e.title for e in evaluations})
    found += [Finding("data_differs", said) for said in data_info.differences]
    result = EvaluationResult(
        tuple(evaluations),
        data_info.class_names,
        data_info.positive_class,
        settings,
        seed,
        differences,
        bootstrap_method(data_info),
        data_info.sample_unit,
        tuple(unique(found)),
    )
    if run_dir is not None:
        write_metrics(run_dir, result)
    if console is not None:
        console.print(metrics_table(result))
        console.print(calibration_table(result))
        tables = (calibration_fit_table(result), conformal_table(result))
        for table in (*tables, group_metrics_table(result), group_calibration_table(result)):
            if table is not None:
                console.print(table)
        for evaluation in evaluations:
            said = [(evaluation.title, message) for message in evaluation.warnings]
            if evaluation.group is not None:
                where = f"{evaluation.title}, per {evaluation.group.unit}"
                said += [(where, message) for message in evaluation.group.warnings]
            for where, message in said:
                console.print(f"[yellow]warning[/yellow] {where}: {message}")
        for finding in result.findings:
            console.print(f"[bold yellow]finding[/bold yellow] {escape(finding.message)}", highlight=False)
    return result
