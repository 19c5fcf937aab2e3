"""The engine: wire dataset -> backbone + head -> trainer -> metrics inside a run directory."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w
from rich.console import Console

from ctframe.base.contracts import BuildContext, DataSplits, TrainedModel
from ctframe.base.errors import CtframeError, RecipeError, RunError, note_log
from ctframe.registry.plugins import Registry, get_registry
from ctframe.registry.recipe import Recipe, load_recipe
from ctframe.runtime import distributed
from ctframe.runtime.environment import describe_environment, seed_everything
from ctframe.runtime.performance import release_memory
from ctframe.storage import checkpoints, integrity
from ctframe.storage.files import first_line, remove_stale_temporaries
from ctframe.storage.rundir import RunDirectory

LOGGER_NAME = "ctframe"
STATUS = "status.json"
FILE_ONLY = "ctframe_file_only"
"""Set in a log record's ``extra`` to keep it out of the console (a traceback goes to run.log only)."""


@dataclass(frozen=True)
class RunResult:
    run_dir: RunDirectory
    trained: list[TrainedModel]
    evaluation: Any


def _resolved_device(recipe: Recipe) -> str:
    from ctframe.runtime.model import resolve_device

    try:
        return resolve_device(recipe.run.device)
    except ValueError as error:
        raise RecipeError(f"{recipe.path}: [run] device: {error}") from None


def make_context(recipe: Recipe, run_dir: RunDirectory | None, resume: bool = False) -> BuildContext:
    return BuildContext(
        seed=recipe.run.seed,
        device=distributed.local_device(_resolved_device(recipe)),
        recipe_dir=recipe.path.parent,
        run_dir=run_dir,
        resume=resume,
        logger=logging.getLogger(LOGGER_NAME),
        fold=recipe.run.fold(),
    )


def build_data(recipe: Recipe, context: BuildContext) -> DataSplits:
    data = recipe.dataset.component.factory(recipe.dataset.options, context)
    if context.fold is not None and list(data.summary.get("fold", ())) != list(context.fold):
        raise RecipeError(
            f"{recipe.path}: dataset {recipe.dataset.component.name!r} does not make cross-validation folds "
            "(its summary has no 'fold'); ctframe cv needs a dataset that supports them"
        )
    if not isinstance(data, DataSplits):
        raise TypeError(
            f"dataset {recipe.dataset.component.name!r} returned {type(data).__name__}, not DataSplits"
        )
    return data


def build_model(recipe: Recipe, context: BuildContext, class_names: tuple[str, ...]):
    from ctframe.runtime.model import Classifier

    backbone = recipe.backbone.component.factory(recipe.backbone.options, context)
    head = recipe.head.component.factory(
        recipe.head.options, context, backbone.out_features, len(class_names)
    )
    return Classifier(backbone, head, class_names)


def build_metrics(recipe: Recipe, context: BuildContext) -> list[tuple[str, Any]]:
    return [(m.component.name, m.component.factory(m.options, context)) for m in recipe.metrics]


def precheck(recipe: Recipe, context: BuildContext) -> None:
    """Run the components' own cheap checks (data paths, weight files) before any work."""
    weights = recipe.run.weights
    if weights is not None and not weights.is_file():
        raise RecipeError(f"{recipe.path}: [run] weights: {weights} does not exist")
    for config in recipe.components():
        if config.component.check is not None:
            config.component.check(config.options, context)


def check_recipe(recipe: Recipe, quick: bool = False) -> list[str]:
    """Everything checkable without training: device, data (paths, files, split), model, trainer.

    ``quick`` stops after the components' own cheap checks (no image is decoded, no model built).
    """
    context = make_context(recipe, run_dir=None)
    precheck(recipe, context)
    if quick:
        return [f"device: {context.device}", "component checks passed (quick: data and model not built)"]
    data = build_data(recipe, context)
    model = build_model(recipe, context, data.class_names)
    recipe.trainer.component.factory(recipe.trainer.options, context)
    build_metrics(recipe, context)
    parameters = sum(p.numel() for p in model.parameters())
    metric_names = [m.component.name for m in recipe.metrics]
    return [
        f"device: {context.device}",
        f"data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test images, "
        f"classes {list(data.class_names)}, positive class {data.positive_class!r}",
        f"model: {recipe.backbone.component.name} + {recipe.head.component.name}, {parameters:,} parameters",
        f"trainer: {recipe.trainer.component.name}; metrics: {', '.join(metric_names)}",
        *(f"data: {line}" for line in data.summary.get("lines", ())),
    ]


class _ConsoleFormatter(logging.Formatter):
    """The message alone: a record's traceback (a plugin's ``logger.exception``) stays in run.log."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def _console_wanted(record: logging.LogRecord) -> bool:
    return not getattr(record, FILE_ONLY, False)


@contextlib.contextmanager
def _logging_to(run_dir: RunDirectory, console: Console | None) -> Iterator[logging.Logger]:
    from rich.logging import RichHandler

    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.NullHandler()]  # other ranks: no console, no run.log
    if distributed.is_main():
        file_handler = logging.FileHandler(run_dir / RunDirectory.LOG, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers = [file_handler]
    if console is not None and distributed.is_main():
        console_handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
        console_handler.setFormatter(_ConsoleFormatter())
        console_handler.addFilter(_console_wanted)
        handlers.append(console_handler)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def _write_status(run_dir: RunDirectory, state: str, **extra: Any) -> None:
    if not distributed.is_main():
        return
    now = datetime.now(UTC).isoformat(timespec="seconds")
    run_dir.write_json(STATUS, {"state": state, "updated": now, **extra})


def _split_summary(data: DataSplits) -> dict[str, Any]:
    return {
        "class_names": list(data.class_names),
        "positive_class": data.positive_class,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        **dict(data.summary),
    }


def _record_precision(recipe: Recipe, trainer: Any, device: str) -> dict[str, Any]:
    from ctframe.runtime.precision import cpu_bf16_features, resolve

    requested = getattr(trainer, "precision", None)
    training = resolve(requested, device).as_dict() if requested else {"resolved": "set by the trainer"}
    return {
        "training": training,
        "evaluation": resolve(recipe.evaluation.precision, device).as_dict(),
        "cpu_bf16_features": cpu_bf16_features(),
    }


def _initial_weights(recipe: Recipe, model: Any, logger: logging.Logger) -> None:
    """``[run] weights``: a whole classifier (backbone and head) to start from."""
    from ctframe.storage.modelfile import read_model_info

    path = recipe.run.weights
    if path is None:
        return
    if path.suffix == ".json":
        path = read_model_info(path).weights_path
    from ctframe.storage.checkpoints import read_state_dict

    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    if missing:
        raise RecipeError(
            f"{recipe.path}: [run] weights {path} lacks {len(missing)} tensors of this model (first: "
            f"{missing[0]!r}); it must hold the whole classifier (backbone.* and head.*)"
        )
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise RecipeError(
                f"{recipe.path}: [run] weights {path}: {name!r} has shape {tuple(state[name].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    if unused:
        logger.warning("[run] weights %s: %d tensors not loaded (first: %s)", path, len(unused), unused[0])
    logger.info("started from the classifier weights in %s", path)


def _as_built(model: Any, logger: logging.Logger) -> list[TrainedModel]:
    logger.warning("the trainer trained nothing (every phase has 0 epochs): evaluating the model as built")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return [TrainedModel("as_built", "Model As Built (no training)", state, ())]


def _predict_and_evaluate(
    recipe: Recipe,
    run_dir: RunDirectory,
    data: DataSplits,
    model: Any,
    trained: list[TrainedModel],
    context: BuildContext,
    console: Console | None,
) -> Any:
    """Core step after training: predict val and test of every model, evaluate, save model files."""
    from ctframe.evaluation import EvaluationData, evaluate
    from ctframe.evaluation.results import ModelPredictions
    from ctframe.runtime.predict import predict_dataset
    from ctframe.storage.history import check_history, write_history

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
            return distributed.map_shards(dataset, predict_share, distributed.concat_predictions)

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
        ),
        build_metrics(recipe, context),
        settings,
        run_dir,
        recipe.run.seed,
        console,
    )
    _save_models(recipe, run_dir, data, model, trained, evaluation)
    return evaluation


def _save_models(
    recipe: Recipe, run_dir: RunDirectory, data: DataSplits, model: Any, trained: list, evaluation: Any
) -> None:
    from ctframe.runtime.environment import plugin_versions
    from ctframe.storage.files import sha256_file
    from ctframe.storage.modelfile import MODELS_DIR, model_metadata, save_model

    folder = run_dir.subdir(MODELS_DIR)
    run_facts = {
        "path": str(run_dir.path),
        "recipe_sha256": sha256_file(run_dir / RunDirectory.RECIPE),
        "versions": plugin_versions(),
    }
    by_key = {e.key: e for e in evaluation.models}
    for entry in trained:
        model.load_state_dict(dict(entry.state_dict), strict=True)
        metadata = model_metadata(recipe, data, entry.title, by_key[entry.key].threshold, run_facts)
        files = [folder / f"{entry.key}.safetensors", folder / f"{entry.key}.json"]
        with integrity.recording(run_dir, files, kind="model"):
            save_model(folder, entry.key, model, metadata)
    index = json.dumps({"models": [e.key for e in trained]}, indent=2) + "\n"
    integrity.write_recorded(folder / "index.json", index.encode(), run_dir, kind="model")


def execute(
    recipe: Recipe, run_dir: RunDirectory, registry: Registry, console: Console | None, resume: bool = False
) -> RunResult:
    """Run every step of a validated recipe inside ``run_dir``."""
    from ctframe.report import build_report

    context = make_context(recipe, run_dir, resume)
    with _logging_to(run_dir, console) as logger:
        logger.info("%s run %s", "resuming" if resume else "starting", run_dir.path)
        if resume and distributed.is_main():
            for stale in remove_stale_temporaries(run_dir.path):  # left by a kill during an atomic write
                logger.info("removed the stale temporary file %s", stale)
        plugins = {p.name: f"{p.package} {p.version}" for p in registry.plugins.values() if not p.error}
        environment = describe_environment(context.device, recipe.run.seed, recipe.path.parent, plugins)
        _write_status(run_dir, "running")
        seed_everything(recipe.run.seed)
        try:
            with distributed.main_goes_first():  # rank 0 fills shared caches; the others then read them
                # only rank 0 lets the dataset write into the run directory (manifest, leakage check)
                data_context = context if distributed.is_main() else replace(context, run_dir=None)
                data = build_data(recipe, data_context)
                model = build_model(recipe, context, data.class_names)
                _initial_weights(recipe, model, logger)
            distributed.check_same_data(data)
            if distributed.is_main():
                run_dir.write_json("split_summary.json", _split_summary(data))
            logger.info("data: %d train / %d val / %d test", len(data.train), len(data.val), len(data.test))
            trainer = recipe.trainer.component.factory(recipe.trainer.options, context)
            distributed.check_trainer(trainer, recipe.trainer.component.name)
            environment["precision"] = _record_precision(recipe, trainer, context.device)
            if distributed.active():
                environment["distributed"] = distributed.describe()
            if distributed.is_main():
                name = "environment.json" if not resume else "environment_resume.json"
                run_dir.write_json(name, environment)
            trained = trainer.fit(model, data.for_training(), context) or _as_built(model, logger)
            release_memory()  # the trainer's caches, activations and optimizer state
            evaluation = _predict_and_evaluate(recipe, run_dir, data, model, trained, context, console)
            _write_status(run_dir, "completed")
            del model, trainer  # the report reads the model files; the weights stay in `trained`
            release_memory()
            if distributed.is_main():
                report = build_report(run_dir.path)
                logger.info("report: %s", report)
        except KeyboardInterrupt:
            _write_status(run_dir, "interrupted")
            logger.warning("interrupted; resume with: ctframe run --resume %s", run_dir.path)
            raise
        except CtframeError as error:
            _write_status(run_dir, "failed", error=str(error))
            raise
        except Exception as error:
            _write_status(run_dir, "failed", error=f"{type(error).__name__}: {first_line(error)}")
            logger.error("internal failure", exc_info=True, extra={FILE_ONLY: True})
            if distributed.is_main():
                note_log(error, run_dir / RunDirectory.LOG)  # the CLI prints this path, not the traceback
            raise
        logger.info("finished: %s", run_dir.path)
    return RunResult(run_dir, trained, evaluation)


def start_run(
    recipe: Recipe,
    output: Path | None = None,
    registry: Registry | None = None,
    console: Console | None = None,
    run_path: Path | None = None,
) -> RunResult:
    """Create ``<output>/<stem>-<timestamp>/`` (or exactly ``run_path``, which must not exist yet), save
    the resolved recipe, run everything."""
    registry = registry or get_registry()
    distributed.join(recipe.run.distributed, _resolved_device(recipe))  # under torchrun only
    precheck(recipe, make_context(recipe, run_dir=None))  # fail before creating anything
    folder = Path(run_path).parent if run_path is not None else Path(output) if output else recipe.run.output
    earlier = distributed.from_main(lambda: distributed.restarted_run(folder))
    if earlier is not None:  # torchrun restarted the workers: continue the run their first attempt made
        return resume_run(earlier, registry, console)

    def create() -> Path:  # rank 0 only; the others receive the path
        if run_path is not None:
            Path(run_path).mkdir(parents=True)
            run_dir = RunDirectory(Path(run_path))
        else:
            run_dir = RunDirectory.create(folder, recipe.stem)
        integrity.start(run_dir)  # from here on, what a resume relies on is recorded as it is written
        header = f"# resolved recipe of this run (from {recipe.path})\n"
        text = header + tomli_w.dumps(recipe.to_dict())
        integrity.write_recorded(run_dir / RunDirectory.RECIPE, text.encode(), run_dir, kind="recipe")
        distributed.remember_run(folder, run_dir.path)
        return run_dir.path

    result = execute(recipe, RunDirectory(distributed.from_main(create)), registry, console)
    distributed.forget_run(result.run_dir.path)
    distributed.leave()
    return result


def resume_run(path: Path, registry: Registry | None = None, console: Console | None = None) -> RunResult:
    """Continue an interrupted run from the state its trainer saved in ``path``.

    Everything is checked before anything is written: the run directory's recorded files against
    ``integrity.json`` (the recipe, the split manifest, checkpoints, model files), the recipe against
    the installed plugins, and the components' cheap checks.
    """
    run_dir = RunDirectory(Path(path))
    recipe_file = run_dir / RunDirectory.RECIPE
    if not recipe_file.is_file():
        raise RunError(
            f"{path}: not a run directory (no {RunDirectory.RECIPE}); pass the folder a run created"
        )
    status = run_dir / STATUS
    if status.is_file() and '"completed"' in status.read_text(encoding="utf-8", errors="replace"):
        raise RunError(f"{path}: this run already completed; start a new one with ctframe run RECIPE")
    checkpoints.verify_run(run_dir)
    registry = registry or get_registry()
    recipe = load_recipe(recipe_file, registry=registry)
    distributed.join(recipe.run.distributed, _resolved_device(recipe))  # under torchrun only
    precheck(recipe, make_context(recipe, run_dir=None))
    distributed.barrier()  # every process has verified the run before rank 0 writes to it
    if distributed.is_main():
        integrity.settle(run_dir)
    result = execute(recipe, run_dir, registry, console, resume=True)
    distributed.forget_run(run_dir.path)
    distributed.leave()
    return result
