"""``evaluate``: threshold on validation, metrics with bootstrap CIs on test, artifacts and a table."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Console

from ctframe.base.contracts import Metric, MetricInput
from ctframe.base.errors import CtframeError, DataError
from ctframe.base.training import Predictions
from ctframe.evaluation import calibration
from ctframe.evaluation.bootstrap import (
    Estimate,
    group_resample_weights,
    looped,
    percentile_interval,
    resample_weights,
    sample_groups,
)
from ctframe.evaluation.decision import checked_arrays, predicted_labels
from ctframe.evaluation.outputs import calibration_table, metrics_table, write_metrics, write_predictions
from ctframe.evaluation.paired import paired_differences
from ctframe.evaluation.results import EvaluationData, EvaluationResult, ModelEvaluation, ModelPredictions
from ctframe.evaluation.threshold import ThresholdChoice, choose_threshold
from ctframe.registry.settings import EvaluationSettings
from ctframe.storage.rundir import RunDirectory

logger = logging.getLogger("ctframe.evaluation")

WARNINGS_KEY = "warnings"
"""A metric may return a list of strings under this name (for example "ROC AUC undefined")."""


def _default_title(name: str) -> str:
    return name.replace("_", " ").title()


def _point_values(
    metrics: Sequence[tuple[str, Metric]], inputs: MetricInput
) -> tuple[dict[str, float], dict[str, Any], dict[str, str], dict[str, str], list[str]]:
    """Scalars, other values, titles, owning metric per scalar, warnings."""
    scalars: dict[str, float] = {}
    others: dict[str, Any] = {}
    titles: dict[str, str] = {}
    owners: dict[str, str] = {}
    warnings: list[str] = []
    for metric_name, metric in metrics:
        metric_titles: Mapping[str, str] = getattr(metric, "titles", {}) or {}
        for name, value in metric(inputs).items():
            if name == WARNINGS_KEY:
                warnings.extend(str(w) for w in value)
                continue
            if name in scalars or name in others:
                warnings.append(
                    f"metric {metric_name!r} repeats the value name {name!r}; the later one is ignored"
                )
                continue
            if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool):
                scalars[name] = float(value)
                owners[name] = metric_name
                titles[name] = metric_titles.get(name, _default_title(name))
            else:
                others[name] = value
    return scalars, others, titles, owners, warnings


def _bootstrap(
    metrics: Sequence[tuple[str, Metric]],
    inputs: MetricInput,
    settings: EvaluationSettings,
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Resampled values per scalar name (metrics and calibration), all from the same resamples:
    whole groups when ``groups`` is given (a cluster bootstrap), single samples otherwise."""
    labels, probabilities = inputs.labels, inputs.probabilities
    confidence, outcome = calibration.calibration_target(labels, probabilities, inputs.positive_index)
    samples: dict[str, list[np.ndarray]] = {}
    batched = [getattr(metric, "batched", None) or looped(metric) for _, metric in metrics]
    blocks_of_weights = (
        resample_weights(labels, settings.bootstrap, seed)
        if groups is None
        else group_resample_weights(labels, groups, settings.bootstrap, seed)
    )
    for weights in blocks_of_weights:
        blocks: dict[str, np.ndarray] = {}
        for compute in batched:
            blocks.update({k: v for k, v in compute(inputs, weights).items() if k != WARNINGS_KEY})
        blocks["ece"] = calibration.weighted_expected_calibration_error(
            confidence, outcome, settings.calibration_bins, weights
        )
        blocks["brier"] = calibration.weighted_brier_score(
            labels, probabilities, inputs.positive_index, weights
        )
        for name, block in blocks.items():
            samples.setdefault(name, []).append(np.asarray(block, dtype=np.float64))
    return {name: np.concatenate(blocks) for name, blocks in samples.items()}


def _groups(test: Predictions, data: EvaluationData) -> np.ndarray | None:
    try:
        return sample_groups(test.sample_ids, data.groups)
    except ValueError as error:
        raise DataError(f"cluster bootstrap: {error}; the dataset must give every sample a group") from None


def bootstrap_method(data: EvaluationData) -> str:
    if data.groups:
        return "stratified cluster bootstrap (whole groups resampled: one group's images are not independent)"
    return "stratified bootstrap of images"


def _with_interval(value: float, samples: np.ndarray | None, settings: EvaluationSettings) -> Estimate:
    if samples is None or settings.bootstrap == 0:
        return Estimate(value)
    return Estimate(value, *percentile_interval(samples, settings.confidence))


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


def _calibration_points(inputs: MetricInput, bins: int) -> dict[str, float]:
    """Expected calibration error and Brier score of the test predictions."""
    labels, probabilities, positive = inputs.labels, inputs.probabilities, inputs.positive_index
    confidence, outcome = calibration.calibration_target(labels, probabilities, positive)
    return {
        "ece": calibration.expected_calibration_error(confidence, outcome, bins),
        "brier": calibration.brier_score(labels, probabilities, positive),
    }


def evaluate_model(
    trained: ModelPredictions,
    data: EvaluationData,
    metrics: Sequence[tuple[str, Metric]],
    settings: EvaluationSettings,
    seed: int,
) -> tuple[ModelEvaluation, np.ndarray, dict[str, np.ndarray]]:
    """One model's evaluation, its predicted test labels and its resampled values."""
    positive = data.positive_index
    threshold = _threshold(trained, data, settings)
    test = trained.test
    inputs = MetricInput(
        test.labels,
        test.probabilities,
        data.class_names,
        positive,
        0.5 if threshold.value is None else threshold.value,
    )
    try:
        labels, probabilities = checked_arrays(inputs)
        inputs = MetricInput(labels, probabilities, data.class_names, positive, inputs.threshold)
        scalars, others, titles, _, warnings = _point_values(metrics, inputs)
    except CtframeError as error:
        raise type(error)(f"{trained.title}, test split: {error}") from None
    if threshold.note:
        warnings.insert(0, threshold.note)
    calibration_points = _calibration_points(inputs, settings.calibration_bins)
    resampled = _bootstrap(metrics, inputs, settings, seed, _groups(test, data)) if settings.bootstrap else {}
    for message in warnings:
        logger.warning("%s: %s", trained.title, message)
    counts = np.bincount(labels, minlength=len(data.class_names))
    evaluation = ModelEvaluation(
        key=trained.key,
        title=trained.title,
        threshold=threshold,
        estimates={name: _with_interval(v, resampled.get(name), settings) for name, v in scalars.items()},
        titles=titles,
        calibration={
            name: _with_interval(v, resampled.get(name), settings) for name, v in calibration_points.items()
        },
        values=others,
        warnings=tuple(warnings),
        samples=len(labels),
        class_counts={name: int(n) for name, n in zip(data.class_names, counts, strict=True)},
    )
    return evaluation, predicted_labels(probabilities, positive, inputs.threshold), resampled


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
    Writes ``predictions_<key>.csv``, ``metrics_<key>.json`` and ``metrics.json`` when ``run_dir``
    is given, and prints the metrics table when ``console`` is given.
    """
    evaluations: list[ModelEvaluation] = []
    resampled: list[dict[str, np.ndarray]] = []
    for model in trained:
        evaluation, predicted, samples = evaluate_model(model, data_info, metrics, settings, seed)
        evaluations.append(evaluation)
        resampled.append(samples)
        if run_dir is not None:
            threshold = evaluation.threshold.value
            write_predictions(run_dir, model.key, model.test, predicted, data_info, threshold)
    result = EvaluationResult(
        tuple(evaluations),
        data_info.class_names,
        data_info.positive_class,
        settings,
        seed,
        paired_differences(trained, evaluations, resampled, settings),
        bootstrap_method(data_info),
    )
    if run_dir is not None:
        write_metrics(run_dir, result)
    if console is not None:
        console.print(metrics_table(result))
        console.print(calibration_table(result))
        for evaluation in evaluations:
            for message in evaluation.warnings:
                console.print(f"[yellow]warning[/yellow] {evaluation.title}: {message}")
    return result
