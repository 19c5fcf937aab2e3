"""After training: predict validation and test of every trained model through one core loop, evaluate,
and write the model files. The test split never reaches a trainer; every model is scored here."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from rich.console import Console

from ctframe.base.contracts import BuildContext, DataSplits
from ctframe.base.training import TrainedModel
from ctframe.evaluation import EvaluationData, evaluate
from ctframe.evaluation.group_rule import trained_rule
from ctframe.evaluation.results import ModelPredictions
from ctframe.evaluation.threshold import validation_rates
from ctframe.registry.recipe import Recipe
from ctframe.runtime import distributed, sharding
from ctframe.runtime.environment import plugin_versions
from ctframe.runtime.predict import predict_dataset
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
    scored = []
    for entry in trained:
        check_history(entry.history, f"trainer {recipe.trainer.component.name!r}, model {entry.key!r}")
        if distributed.is_main():
            write_history(run_dir.path, entry.key, entry.history)
        model.load_state_dict(dict(entry.state_dict), strict=True)

        def predict_share(dataset: Any) -> Any:
            return predict_dataset(
                model,
                dataset,
                device=context.device,
                precision=settings.precision,
                batch_size=settings.batch_size,
                num_workers=data.num_workers,
            )

        def predict(dataset: Any) -> Any:  # each process scores its share once; rank 0 gets them all
            return sharding.map_shards(dataset, predict_share, sharding.concat_predictions)

        scored.append(ModelPredictions(entry.key, entry.title, predict(data.val), predict(data.test)))
    if not distributed.is_main():
        return None  # metrics, model files and the report are rank 0's
    evaluation = evaluate(
        scored,
        EvaluationData(
            class_names=data.class_names,
            positive_class=data.positive_class,
            files=dict(data.files),
            groups=dict(data.groups),
            group_unit=data.group_unit,
        ),
        build_metrics(recipe, context),
        settings,
        run_dir,
        recipe.run.seed,
        console,
    )
    _save_models(recipe, run_dir, data, model, trained, evaluation, scored)
    return evaluation


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
