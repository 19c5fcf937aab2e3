"""``ctframe cv RECIPE --folds K``: the recipe on K stratified, group-disjoint folds.

Each fold is an ordinary run in ``CV/fold-<k>/`` whose recipe says which fold it is (``[run] cv_fold``,
``cv_folds``): its dataset makes that fold the test split and takes validation from the other folds
by the same grouping, so every image is tested exactly once, by a model that never saw its group.
A fold resumes like any run; the cross-validation resumes from the plan it stored (``cv_plan``).
``CV/`` then holds the folds side by side (``folds.json``: every fold's metrics, their mean and sd) and
the pooled out-of-fold predictions evaluated once, with bootstrap CIs that resample groups when the
dataset has them; ``ctframe compare`` reads it like a run.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.base.errors import RunError
from ctframe.evaluation import Aggregation, EvaluationData, ThresholdChoice, evaluate
from ctframe.evaluation.results import ModelPredictions
from ctframe.registry.plugins import get_registry
from ctframe.registry.recipe import load_recipe, read_recipe_text
from ctframe.report import build_report
from ctframe.storage.files import atomic_open
from ctframe.storage.layout import (
    CV_FOLD,
    CV_FOLDS,
    METRICS,
    OOF_PREDICTIONS,
    PREDICTIONS,
    RECIPE,
)
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.assembly import build_data, build_metrics, make_context, precheck
from ctframe.workflows.cv_plan import CvPlan, check_folds, completed, read_plan, write_plan
from ctframe.workflows.engine import resume_run, start_run
from ctframe.workflows.prediction_files import read_predictions

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.registry.plugins import Registry


def _fold_path(root: Path, fold: int) -> Path:
    return CV_FOLD.path(root, fold)


def _run_fold(plan: CvPlan, root: Path, fold: int, registry: Registry, console: Console | None) -> None:
    run = _fold_path(root, fold)
    if completed(run):
        return
    if RECIPE.path(run).is_file():
        resume_run(run, registry=registry, console=console)
        return
    recipe = plan.recipe_for(fold, registry)
    if run.exists():  # created, then killed before its recipe was written: nothing in it to keep
        shutil.rmtree(run)
    start_run(recipe, registry=registry, console=console, run_path=run)


def start_cv(
    recipe_path: Path,
    folds: int,
    overrides: Sequence[str] = (),
    output: Path | None = None,
    registry: Registry | None = None,
    console: Console | None = None,
) -> Path:
    """Validate the recipe and the fold plan, create ``<output>/<stem>-cv<K>-<stamp>/``, run every fold.

    Everything that can fail before training is checked before the folder exists: the recipe, the
    components' checks, and the data split into ``folds`` folds (the dataset builds fold 0 once).
    """

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise RunError(f"--folds {folds}: cross-validation needs at least 2 folds")
    registry = registry or get_registry()
    path = Path(recipe_path).absolute()
    plan = CvPlan(path, read_recipe_text(path), tuple(overrides), folds)
    recipe = plan.recipe_for(0, registry)
    context = make_context(recipe, run_dir=None)
    precheck(recipe, context)
    build_data(recipe, context)  # a fold plan the data cannot satisfy fails here, not in fold-0/
    root = RunDirectory.create(Path(output) if output else recipe.run.output, f"{recipe.stem}-cv{folds}")
    write_plan(root.path, plan)
    return _run_all(plan, root.path, registry, console)


def resume_cv(root: Path, registry: Registry | None = None, console: Console | None = None) -> Path:
    """Finish an interrupted cross-validation from the plan it stored: completed folds are kept, the
    others resume or start. The plan and every fold folder are checked before anything is written."""

    root = Path(root)
    plan = read_plan(root)
    registry = registry or get_registry()
    check_folds(root, plan, registry)
    return _run_all(plan, root, registry, console)


def _run_all(plan: CvPlan, root: Path, registry: Registry, console: Console | None) -> Path:
    for fold in range(plan.folds):
        _run_fold(plan, root, fold, registry, console)
    summarise(root, plan.folds, console)
    return root


# ------------------------------------------------------------------------------------------ summary


def _fold_metrics(run: Path) -> dict[str, Any]:
    return json.loads(METRICS.path(run).read_text(encoding="utf-8"))


def _pooled_rows(runs: Sequence[Path], key: str) -> tuple[list[str], list[list[str]]]:
    header: list[str] | None = None
    rows: list[list[str]] = []
    seen: dict[str, str] = {}  # group -> the fold that tested it
    for run in runs:
        with open(PREDICTIONS.path(run, key), newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            fold_header = next(reader)
            if header is not None and fold_header != header:
                raise RunError(f"{run}: {PREDICTIONS.filename(key)} has other columns than the first fold's")
            header = fold_header
            fold_rows = list(reader)
        if "group" in header:
            _check_disjoint(seen, {row[header.index("group")] for row in fold_rows}, run)
        rows.extend(fold_rows)
    return header or [], rows


def _check_disjoint(seen: dict[str, str], groups: set[str], run: Path) -> None:
    """A group is tested in one fold only (the folds are grouped): pooling its answers twice would count
    one patient as two."""
    again = sorted(group for group in groups if group in seen)
    if again:
        raise RunError(
            f"{run}: {len(again)} group(s) were also tested in an earlier fold (first: {again[0]} in "
            f"{seen[again[0]]}); the dataset's folds must keep each group in one fold"
        )
    seen.update((group, run.name) for group in groups)


def _fold_table(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each metric of one model (its record in every fold's metrics.json, or that record's group level)
    that some fold has a value of: the per-fold values, mean and sd."""
    names = list(records[0]["metrics"])
    values = {name: [record["metrics"][name]["value"] for record in records] for name in names}
    return {
        name: {
            "folds": series,
            "mean": statistics.fmean(v for v in series if v is not None),
            "sd": statistics.stdev([v for v in series if v is not None]) if len(series) > 1 else 0.0,
        }
        for name, series in values.items()
        if any(v is not None for v in series)
    }


def _pooled_model(
    root: Path, runs: Sequence[Path], per_fold: Sequence[dict[str, Any]], key: str
) -> tuple[ModelPredictions, EvaluationData]:
    """Model ``key``'s out-of-fold predictions of every fold, pooled into one file and read back at the
    median of the folds' thresholds, with the facts about the data that file gives. With groups, each
    fold's test groups are aggregated by the folds' rule and decided at the median of the folds' group
    thresholds (each group is in one fold, so its probability is the one its fold model gave)."""
    header, rows = _pooled_rows(runs, key)
    pooled = OOF_PREDICTIONS.path(root, key)
    with atomic_open(pooled) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    thresholds = [fold["models"][key]["threshold"]["value"] for fold in per_fold]
    read = read_predictions(pooled, None, None if thresholds[0] is None else statistics.median(thresholds))
    choice = _median_choice(thresholds, read.threshold)
    title = per_fold[0]["models"][key].get("title", key)
    levels = [fold["models"][key].get("group_level") for fold in per_fold]
    data = read.data()
    if not read.groups or not all(levels):
        model = ModelPredictions(key, f"{title} (out-of-fold)", None, read.predictions, threshold=choice)
        return model, data
    group_thresholds = [level["threshold"]["value"] for level in levels]
    group_choice = _median_choice(
        group_thresholds, None if group_thresholds[0] is None else statistics.median(group_thresholds)
    )
    aggregate = dict(levels[0]["aggregate"])
    how = Aggregation(aggregate["method"], aggregate.get("k", 5), aggregate.get("quantile", 0.9))
    model = ModelPredictions(key, f"{title} (out-of-fold)", None, read.predictions, choice, group_choice, how)
    return model, replace(data, group_unit=str(levels[0].get("unit", "group")))


def _median_choice(thresholds: Sequence[float | None], median: float | None) -> ThresholdChoice:
    if median is None:
        return ThresholdChoice("argmax", None)
    method = "fixed" if len(set(thresholds)) == 1 else "median of the folds' thresholds"
    return ThresholdChoice(method, median)


def summarise(root: Path, folds: int, console: Console | None = None) -> dict[str, Any]:
    """Per-fold metrics with mean and sd, and the pooled out-of-fold predictions evaluated once."""

    root = Path(root)
    runs = [_fold_path(root, fold) for fold in range(folds)]
    unfinished = [run.name for run in runs if not completed(run)]
    if unfinished:
        raise RunError(f"{root}: fold(s) {', '.join(unfinished)} not completed; ctframe cv --resume {root}")
    per_fold = [_fold_metrics(run) for run in runs]
    keys = list(per_fold[0]["models"])
    table = {key: _fold_table([fold["models"][key] for fold in per_fold]) for key in keys}
    levels = {key: [fold["models"][key].get("group_level") for fold in per_fold] for key in keys}
    group_table = {key: _fold_table(found) for key, found in levels.items() if all(found)}
    pooled = [_pooled_model(root, runs, per_fold, key) for key in keys]
    scored = [model for model, _ in pooled]
    recipe = load_recipe(RECIPE.path(runs[0]))

    summary = {"folds": folds, "runs": [run.name for run in runs], "per_fold": table}
    if group_table:
        summary["per_fold_group_level"] = group_table
    RunDirectory(root).write_json(CV_FOLDS, summary)
    evaluate(
        scored,
        pooled[-1][1],
        build_metrics(recipe, make_context(recipe, run_dir=None)),
        recipe.evaluation,
        RunDirectory(root),
        recipe.run.seed,
        console,
    )
    _rename_pooled(root, keys)
    build_report(root)
    return summary


def _rename_pooled(root: Path, keys: Sequence[str]) -> None:
    """``evaluate`` wrote ``predictions_<key>.csv`` (the pooled ones, re-thresholded); keep just those."""
    for key in keys:
        (OOF_PREDICTIONS.path(root, key)).unlink(missing_ok=True)
