"""After training: predict validation and test of every trained model through one core loop, evaluate,
and write the model files. The test split never reaches a trainer; every model is scored here."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from rich.console import Console

from ctframe.base.contracts import BuildContext, DataSplits
from ctframe.base.training import TrainedModel
from ctframe.evaluation import EvaluationData, evaluate
from ctframe.evaluation.group_rule import trained_rule
from ctframe.evaluation.results import ModelPredictions
from ctframe.evaluation.subgroup_sources import subgroups_from_attributes
from ctframe.evaluation.subgroups import evaluate_subgroups
from ctframe.evaluation.threshold import validation_rates
from ctframe.registry.recipe import Recipe
from ctframe.runtime import distributed, sharding
from ctframe.runtime.environment import plugin_versions
from ctframe.runtime.performance import release_memory
from ctframe.runtime.predict import predict_dataset
from ctframe.runtime.shared_prefix import predict_shared, shared_segments
from ctframe.storage import integrity
from ctframe.storage.files import sha256_file
from ctframe.storage.history import check_history, write_history
from ctframe.storage.layout import MODEL_INDEX, MODEL_INFO, MODEL_WEIGHTS, MODELS, RECIPE
from ctframe.storage.modelfile import model_metadata, save_model
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.assembly import build_metrics


def as_built(model: Any, logger: logging.Logger) -> list[TrainedModel]:
    logger.warning("the trainer trained nothing (every phase has 0 epochs): evaluating the model as built")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return [TrainedModel("as_built", "Model As Built (no training)", state, ())]


# what the engine holds of a run after training, each piece needed here; its one caller passes them all
def predict_and_evaluate(
    recipe: Recipe,
    run_dir: RunDirectory,
    data: DataSplits,
    model: Any,
    trained: list[TrainedModel],
    context: BuildContext,
    console: Console | None,
) -> Any:
    """Core step after training: predict val and test of every model, evaluate, save model files."""
    settings = recipe.evaluation
    for entry in trained:
        check_history(entry.history, f"trainer {recipe.trainer.component.name!r}, model {entry.key!r}")
        if distributed.is_main():
            write_history(run_dir.path, entry.key, entry.history)
    states = [dict(entry.state_dict) for entry in trained]
    shared = shared_segments(model, states)
    if shared:
        context.logger.info(
            "predicting %d models through their %d shared backbone segments once", len(states), shared
        )
    how = {
        "device": context.device,
        "precision": settings.precision,
        "batch_size": settings.batch_size,
        "num_workers": data.num_workers,
    }

    def predict_share(dataset: Any) -> list[Any]:
        if shared:
            return predict_shared(model, states, dataset, shared=shared, **how)
        found = []
        for state in states:
            model.load_state_dict(state, strict=True)
            found.append(predict_dataset(model, dataset, **how))
        return found

    def per_model(parts: list[list[Any]]) -> list[Any]:  # shares in rank order -> one result per model
        return [sharding.concat_predictions([part[k] for part in parts]) for k in range(len(states))]

    # each process scores its share once; rank 0 gets them all
    started = time.perf_counter()
    vals, tests = (sharding.map_shards(split, predict_share, per_model) for split in (data.val, data.test))
    context.logger.info(  # benchmarks/bench_study.py times the steps of a run by these lines
        "predicted validation and test of %d model(s) in %.1f s", len(states), time.perf_counter() - started
    )
    release_memory()  # the forward passes' blocks; saving the models next would stack on them
    scored = [
        ModelPredictions(entry.key, entry.title, val, test)
        for entry, val, test in zip(trained, vals, tests, strict=True)
    ]
    if not distributed.is_main():
        return None  # metrics, model files and the report are rank 0's
    facts = EvaluationData(
        class_names=data.class_names,
        positive_class=data.positive_class,
        files=dict(data.files),
        groups=dict(data.groups),
        group_unit=data.group_unit,
    )
    metrics = build_metrics(recipe, context)
    started = time.perf_counter()
    evaluation = evaluate(scored, facts, metrics, settings, run_dir, recipe.run.seed, console)
    context.logger.info("evaluated in %.1f s", time.perf_counter() - started)
    if settings.subgroups and data.attributes:
        _dataset_subgroups(recipe, run_dir, data, scored, evaluation, facts, metrics, context.logger, console)
    _save_models(recipe, run_dir, data, model, trained, evaluation, scored)
    return evaluation


def _dataset_subgroups(
    recipe: Recipe,
    run_dir: RunDirectory,
    data: DataSplits,
    scored: list[ModelPredictions],
    evaluation: Any,
    facts: EvaluationData,
    metrics: Any,
    logger: logging.Logger,
    console: Console | None,
) -> None:
    """The test split per value of each attribute the dataset offers (``subgroups.json``)."""
    table, constant = subgroups_from_attributes(data.attributes, list(scored[0].test.sample_ids))
    for variable, value in constant.items():
        logger.info("subgroups: every test image has %s %s; not broken down by it", variable, value)
    if table:
        source = f"the dataset's attributes (dataset {recipe.dataset.component.name})"
        tests = {model.key: model.test for model in scored}
        evaluate_subgroups(evaluation, tests, facts, metrics, table, source, run_dir, console)


def _save_models(
    recipe: Recipe,
    run_dir: RunDirectory,
    data: DataSplits,
    model: Any,
    trained: list,
    evaluation: Any,
    predicted: list[ModelPredictions],
) -> None:
    run_dir.subdir(MODELS)
    run_facts = {
        "path": str(run_dir.path),
        "recipe_sha256": sha256_file(RECIPE.path(run_dir)),
        "versions": plugin_versions(),
    }
    by_key = {e.key: e for e in evaluation.models}
    unit = data.group_unit if data.groups else None
    for entry in trained:
        model.load_state_dict(dict(entry.state_dict), strict=True)
        scored = by_key[entry.key]
        rule = trained_rule(scored.group, recipe.evaluation, len(data.class_names), unit)
        fit, conformal = scored.recalibration, scored.conformal
        val = next(p.val for p in predicted if p.key == entry.key)
        if val is not None and fit is not None:
            val = replace(val, probabilities=fit.apply(val.probabilities, data.positive_index))
        reached = validation_rates(
            val, data.positive_index, scored.threshold.value, recipe.evaluation.confidence
        )
        metadata = model_metadata(
            recipe,
            data,
            entry.title,
            scored.threshold,
            run_facts,
            rule.as_record(),
            calibration=None if fit is None or fit.method == "none" else fit.record(),
            conformal=None if conformal is None else conformal.record(),
            validation_rates=reached,
        )
        files = [MODEL_WEIGHTS.path(run_dir, entry.key), MODEL_INFO.path(run_dir, entry.key)]
        with integrity.recording(run_dir, files, kind="model"):
            save_model(run_dir.path, entry.key, model, metadata)
    index = json.dumps({"models": [e.key for e in trained]}, indent=2) + "\n"
    integrity.write_recorded(MODEL_INDEX.path(run_dir), index.encode(), run_dir, kind="model")
