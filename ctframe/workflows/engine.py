"""The engine: a run of a recipe inside its run directory, started, resumed or restarted by torchrun.

The steps are small modules of their own: :mod:`~ctframe.workflows.assembly` builds what the recipe names,
the trainer fits, :mod:`~ctframe.workflows.scored` predicts, evaluates and writes the model files, the
report is built from the run's files; :mod:`~ctframe.workflows.runlog` keeps the log.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w
from rich.console import Console

from ctframe.base.contracts import DataSplits
from ctframe.base.errors import CtframeError, RunError, note_log
from ctframe.base.training import TrainedModel, Trainer
from ctframe.registry.plugins import Registry, get_registry
from ctframe.registry.recipe import Recipe, load_recipe
from ctframe.report import PlotWriter, ReportContext, read_run, render
from ctframe.runtime import distributed, restarts
from ctframe.runtime.environment import describe_environment, seed_everything
from ctframe.runtime.performance import release_memory
from ctframe.runtime.precision import cpu_bf16_features, resolve
from ctframe.storage import checkpoints, integrity
from ctframe.storage.files import first_line, remove_stale_temporaries, write_text
from ctframe.storage.layout import (
    ENVIRONMENT,
    ENVIRONMENT_RESUME,
    LOG,
    RECIPE,
    REPORT,
    SPLIT_SUMMARY,
    STATUS,
)
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.assembly import (
    build_data,
    build_model,
    build_trainer,
    load_initial_weights,
    make_context,
    precheck,
    resolved_device,
)
from ctframe.workflows.runlog import FILE_ONLY, logging_to
from ctframe.workflows.scored import as_built, predict_and_evaluate

EVALUATED = "evaluated"
"""The state between the evaluation and ``completed``: predictions, metrics and model files are written."""


@dataclass(frozen=True)
class RunResult:
    run_dir: RunDirectory
    trained: list[TrainedModel]
    evaluation: Any


def _status(state: str, **extra: Any) -> dict[str, Any]:
    return {"state": state, "updated": datetime.now(UTC).isoformat(timespec="seconds"), **extra}


def _write_status(run_dir: RunDirectory, state: str, **extra: Any) -> None:
    if distributed.is_main():
        run_dir.write_json(STATUS, _status(state, **extra))


def _finish(run_dir: RunDirectory, registry: Registry, logger: logging.Logger) -> None:
    """The last steps of a run whose evaluation is written: the report, then ``completed``.

    The report is drawn as the completed run shows it, so a run whose ``completed`` a kill prevented
    resumes to the same report; ``completed`` on disk always means the report is there too.
    """
    if not distributed.is_main():
        return
    run = read_run(run_dir.path)
    run.status = _status("completed")
    report = write_text(REPORT.path(run_dir), render(ReportContext(run, PlotWriter(run_dir.path), registry)))
    logger.info("report: %s", report)
    run_dir.write_json(STATUS, run.status)


def _evaluated(run_dir: RunDirectory) -> bool:
    """Whether the run stopped after its evaluation was written (only the report was left to do)."""
    try:
        status = json.loads(STATUS.path(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(status, dict) and (status.get("state") == EVALUATED or status.get(EVALUATED) is True)


def _split_summary(data: DataSplits) -> dict[str, Any]:
    return {
        "class_names": list(data.class_names),
        "positive_class": data.positive_class,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        **dict(data.summary),
    }


def _record_precision(recipe: Recipe, trainer: Trainer, device: str) -> dict[str, Any]:
    requested = trainer.precision
    training = resolve(requested, device).as_dict() if requested else {"resolved": "set by the trainer"}
    return {
        "training": training,
        "evaluation": resolve(recipe.evaluation.precision, device).as_dict(),
        "cpu_bf16_features": cpu_bf16_features(),
    }


def execute(
    recipe: Recipe, run_dir: RunDirectory, registry: Registry, console: Console | None, resume: bool = False
) -> RunResult:
    """Run every step of a validated recipe inside ``run_dir``."""
    context = make_context(recipe, run_dir, resume)
    with logging_to(run_dir, console) as logger:
        logger.info("%s run %s", "resuming" if resume else "starting", run_dir.path)
        if resume and distributed.is_main():
            for stale in remove_stale_temporaries(run_dir.path):  # left by a kill during an atomic write
                logger.info("removed the stale temporary file %s", stale)
        plugins = {p.name: f"{p.package} {p.version}" for p in registry.plugins.values() if not p.error}
        for line in registry.warnings():  # the console had them from the command line already
            logger.warning(line, extra={FILE_ONLY: True})
        environment = describe_environment(context.device, recipe.run.seed, recipe.path.parent, plugins)
        _write_status(run_dir, "running")
        seed_everything(recipe.run.seed)
        evaluated: dict[str, bool] = {}  # once set, a resume only has the report left to build
        try:
            with distributed.main_goes_first():  # rank 0 fills shared caches; the others then read them
                # only rank 0 lets the dataset write into the run directory (manifest, leakage check)
                data_context = context if distributed.is_main() else replace(context, run_dir=None)
                data = build_data(recipe, data_context)
                model = build_model(recipe, context, data.class_names)
                load_initial_weights(recipe, model, logger)
            distributed.check_same_data(data)
            if distributed.is_main():
                run_dir.write_json(SPLIT_SUMMARY, _split_summary(data))
            logger.info("data: %d train / %d val / %d test", len(data.train), len(data.val), len(data.test))
            trainer = build_trainer(recipe, context)
            distributed.check_trainer(trainer, recipe.trainer.component.name)
            environment["precision"] = _record_precision(recipe, trainer, context.device)
            if distributed.active():
                environment["distributed"] = distributed.describe()
            if distributed.is_main():
                run_dir.write_json(ENVIRONMENT_RESUME if resume else ENVIRONMENT, environment)
            trained = trainer.fit(model, data.for_training(), context) or as_built(model, logger)
            release_memory()  # the trainer's caches, activations and optimizer state
            evaluation = predict_and_evaluate(recipe, run_dir, data, model, trained, context, console)
            evaluated = {EVALUATED: True}
            _write_status(run_dir, EVALUATED)
            del model, trainer  # the report reads the model files; the weights stay in `trained`
            release_memory()
            _finish(run_dir, registry, logger)
        except KeyboardInterrupt:
            _write_status(run_dir, "interrupted", **evaluated)
            logger.warning("interrupted; resume with: ctframe run --resume %s", run_dir.path)
            raise
        except CtframeError as error:
            _write_status(run_dir, "failed", error=str(error), **evaluated)
            raise
        except Exception as error:
            why = f"{type(error).__name__}: {first_line(error)}"
            _write_status(run_dir, "failed", error=why, **evaluated)
            logger.error("internal failure", exc_info=True, extra={FILE_ONLY: True})
            if distributed.is_main():
                note_log(error, LOG.path(run_dir))  # the CLI prints this path, not the traceback
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
    distributed.join(recipe.run.distributed, resolved_device(recipe))  # under torchrun only
    precheck(recipe, make_context(recipe, run_dir=None))  # fail before creating anything
    folder = Path(run_path).parent if run_path is not None else Path(output) if output else recipe.run.output
    earlier = distributed.from_main(lambda: restarts.restarted_run(folder))
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
        integrity.write_recorded(RECIPE.path(run_dir), text.encode(), run_dir, kind="recipe")
        restarts.remember_run(folder, run_dir.path)
        return run_dir.path

    result = execute(recipe, RunDirectory(distributed.from_main(create)), registry, console)
    restarts.forget_run(result.run_dir.path)
    distributed.leave()
    return result


def resume_run(path: Path, registry: Registry | None = None, console: Console | None = None) -> RunResult:
    """Continue an interrupted run from the state its trainer saved in ``path``.

    Everything is checked before anything is written: the run directory's recorded files against
    ``integrity.json`` (the recipe, the split manifest, checkpoints, model files), the recipe against
    the installed plugins, and the components' cheap checks.
    """
    run_dir = RunDirectory(Path(path))
    recipe_file = RECIPE.path(run_dir)
    if not recipe_file.is_file():
        raise RunError(f"{path}: not a run directory (no {RECIPE.name}); pass the folder a run created")
    status = STATUS.path(run_dir)
    if status.is_file() and '"completed"' in status.read_text(encoding="utf-8", errors="replace"):
        raise RunError(f"{path}: this run already completed; start a new one with ctframe run RECIPE")
    checkpoints.verify_run(run_dir)
    registry = registry or get_registry()
    recipe = load_recipe(recipe_file, registry=registry)
    if _evaluated(run_dir):  # stopped after the evaluation: the report is all that is left
        return _resume_report(run_dir, registry, console)
    distributed.join(recipe.run.distributed, resolved_device(recipe))  # under torchrun only
    precheck(recipe, make_context(recipe, run_dir=None))
    distributed.barrier()  # every process has verified the run before rank 0 writes to it
    if distributed.is_main():
        integrity.settle(run_dir)
    result = execute(recipe, run_dir, registry, console, resume=True)
    restarts.forget_run(run_dir.path)
    distributed.leave()
    return result


def _resume_report(run_dir: RunDirectory, registry: Registry, console: Console | None) -> RunResult:
    """Finish a run whose evaluation is on disk (and verified): build the report, then ``completed``."""
    with logging_to(run_dir, console) as logger:
        logger.info("resuming run %s: its evaluation is complete, building the report", run_dir.path)
        if distributed.is_main():
            integrity.settle(run_dir)
            for stale in remove_stale_temporaries(run_dir.path):
                logger.info("removed the stale temporary file %s", stale)
        _finish(run_dir, registry, logger)
        logger.info("finished: %s", run_dir.path)
    restarts.forget_run(run_dir.path)
    return RunResult(run_dir, [], None)
