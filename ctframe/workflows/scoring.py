"""``ctframe metrics PREDICTIONS.csv``: score any predictions file with the metric plugins.

The file needs a ``true_class`` column and one ``p_<class>`` probability column per class
(ctframe's own predictions files have both; docs/metrics.md describes the format), or names another
tool's label and score columns (:mod:`ctframe.workflows.prediction_files`). The positive
class and the threshold come from the command line, else from the file's ``positive_class`` and
``threshold`` columns, else the threshold is 0.5. A group-level file (``predictions_<key>_<unit>.csv``:
``group``, ``unit`` and ``images`` columns) is scored one row per group, and its results say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ctframe.base.contracts import Kind
from ctframe.base.errors import DataError
from ctframe.base.filenames import escape_path
from ctframe.evaluation import EvaluationSettings, ThresholdChoice, evaluate
from ctframe.evaluation.results import ModelPredictions
from ctframe.evaluation.subgroup_sources import subgroups_from_csv
from ctframe.evaluation.subgroups import evaluate_subgroups
from ctframe.registry.plugins import get_registry
from ctframe.report import build_report
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.prediction_files import Columns, read_predictions

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.registry.plugins import Registry


def _metrics(registry: Registry, names: Sequence[str]) -> list[tuple[str, object]]:
    available = registry.names(Kind.METRIC)
    chosen = list(names) or available
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise DataError(f"unknown metric(s) {', '.join(unknown)}; installed: {', '.join(available)}")
    metrics = []
    for name in chosen:
        component = registry.get(Kind.METRIC, name)
        metrics.append((name, component.factory(component.options(), None)))
    return metrics


# keyword-only options with defaults, one per option of `ctframe metrics`: the command's library face
def score_predictions(
    path: Path,
    *,
    positive: str | None = None,
    threshold: float | None = None,
    output: Path | None = None,
    metric_names: Sequence[str] = (),
    bootstrap: int = 1000,
    seed: int = 0,
    subgroups: Path | None = None,
    subgroup_columns: Sequence[str] = (),
    columns: Columns | None = None,
    registry: Registry | None = None,
    console: Console | None = None,
) -> Path:
    """Metrics, bootstrap CIs, calibration and a report for one predictions file; returns the folder.
    With ``subgroups`` (a CSV keyed by file, or by group for a file with groups or a group-level file)
    also per subgroup (:mod:`ctframe.evaluation.subgroups`)."""

    path = Path(path)
    read = read_predictions(path, positive, threshold, columns)
    table = None
    if subgroups is not None:  # a group-level file's rows are its groups
        ids = read.predictions.sample_ids
        matched = read.groups if read.unit == "image" else {sample: sample for sample in ids}
        table = subgroups_from_csv(subgroups, read.files, matched, subgroup_columns)
    key = path.stem.removeprefix("predictions_") or "model"
    title = key if read.unit == "image" else f"{key} (per {read.unit})"
    folder = RunDirectory(Path(output) if output else path.with_name(f"{path.stem}_metrics"))
    folder.path.mkdir(parents=True, exist_ok=True)
    threshold = read.threshold
    choice = ThresholdChoice("argmax", None) if threshold is None else ThresholdChoice("fixed", threshold)
    settings = EvaluationSettings(bootstrap=bootstrap)
    metrics = _metrics(registry or get_registry(), metric_names)
    model = ModelPredictions(key, title, None, read.predictions, threshold=choice)
    result = evaluate([model], read.data(), metrics, settings, folder, seed, console)
    if table is not None and subgroups is not None:
        tests = {key: read.predictions}
        shown = escape_path(Path(subgroups).absolute())
        evaluate_subgroups(result, tests, read.data(), metrics, table, shown, folder, console)
    build_report(folder.path)
    return folder.path
