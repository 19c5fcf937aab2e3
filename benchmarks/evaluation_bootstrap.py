"""Bootstrap speed: vectorised metrics against calling scikit-learn once per resample.

    .venv/bin/python benchmarks/evaluation_bootstrap.py [--samples 750] [--resamples 1000]
    .venv/bin/python benchmarks/evaluation_bootstrap.py --smoke   # 60 samples, 20 resamples: seconds

Both paths see the same stratified resamples (the blocks evaluation draws with the same seed), so
the table also shows that they agree. The reference is the generic per-resample loop evaluation
falls back to for a metric without ``batched``; it is timed on fewer resamples and scaled up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ctframe import Kind, MetricInput
from ctframe.evaluation.bootstrap import looped, resample_weights
from ctframe.registry.plugins import build_registry

METRICS = [
    ("accuracy", {}),
    ("precision", {}),
    ("recall", {}),
    ("specificity", {}),
    ("f1", {}),
    ("roc_auc", {}),
    ("pr_auc", {}),
    ("precision", {"average": "macro"}),
    ("recall", {"average": "weighted"}),
    ("f1", {"average": "macro"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description="bootstrap speed of the classification metrics")
    parser.add_argument("--samples", type=int, default=750)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--reference-resamples", type=int, default=100, help="resamples for the slow reference"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    arguments = parser.parse_args()
    if arguments.smoke:
        arguments.samples, arguments.resamples, arguments.reference_resamples = 60, 20, 5

    registry = build_registry(selection="classification_metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, arguments.samples)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).round(3)
    inputs = MetricInput(labels, np.stack([1 - scores, scores], 1), ("negative", "positive"), 1, 0.5)
    weights = list(resample_weights(labels, arguments.resamples, seed=42))  # what evaluation draws
    reference_weights = weights[0][: arguments.reference_resamples]

    print(f"{arguments.samples} samples, {arguments.resamples} stratified resamples")
    print(f"per-resample reference timed on {len(reference_weights)} resamples and scaled up\n")
    print(f"{'metric':<24}{'vectorised s':>14}{'per-resample s':>16}{'speed-up':>10}{'max |diff|':>12}")
    total_fast = total_slow = 0.0
    for name, options in METRICS:
        component = registry.get(Kind.METRIC, name)
        metric = component.factory(component.options(**options), None)
        metric(inputs)  # imports and first-call caches stay outside the timing
        start = time.perf_counter()
        fast = [metric.batched(inputs, block) for block in weights]
        fast_seconds = time.perf_counter() - start
        start = time.perf_counter()
        slow = looped(metric)(inputs, reference_weights)
        slow_seconds = (time.perf_counter() - start) * arguments.resamples / len(reference_weights)
        (value_name,) = fast[0]
        difference = np.nanmax(np.abs(fast[0][value_name][: len(reference_weights)] - slow[value_name]))
        total_fast += fast_seconds
        total_slow += slow_seconds
        label = name + (f" ({options['average']})" if options else "")
        print(
            f"{label:<24}{fast_seconds:>14.3f}{slow_seconds:>16.2f}{slow_seconds / fast_seconds:>9.0f}x"
            f"{difference:>12.1e}"
        )
    print(f"{'all':<24}{total_fast:>14.3f}{total_slow:>16.2f}{total_slow / total_fast:>9.0f}x")
    _end_to_end(registry, inputs, arguments)


def _end_to_end(registry, inputs: MetricInput, arguments: argparse.Namespace) -> None:
    """evaluate() of two models: thresholds, all metrics, calibration, bootstrap (no files written)."""
    from ctframe import Predictions
    from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
    from ctframe.evaluation.results import ModelPredictions

    metrics = []
    for name, options in METRICS:
        component = registry.get(Kind.METRIC, name)
        metrics.append((name, component.factory(component.options(**options), None)))
    ids = tuple(f"s{i}" for i in range(len(inputs.labels)))
    predictions = Predictions(ids, inputs.labels, inputs.probabilities)
    models = [
        ModelPredictions(key, key, test=predictions, val=predictions) for key in ("initial", "finetuned")
    ]
    settings = EvaluationSettings(threshold="youden", bootstrap=arguments.resamples)
    start = time.perf_counter()
    evaluate(models, EvaluationData(inputs.class_names, "positive"), metrics, settings, None, 42)
    print(
        f"\nevaluate(): 2 models x {len(metrics)} metrics + ECE + Brier, {arguments.resamples} resamples: "
        f"{time.perf_counter() - start:.2f} s"
    )


if __name__ == "__main__":
    main()
