"""``ctframe metrics``: score any predictions file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import ForceOption, JsonOption, SubgroupColumnOption, SubgroupsOption, app

LARGE_FILE_ROWS = 1_000_000
"""Above this many rows ``metrics`` first states its estimated peak memory (docs/metrics.md, Memory)."""
BYTES_PER_ROW = 720
"""Reading, scoring and reporting hold each row's id, file and number strings: ~0.7 KiB a row, measured
with benchmarks/bench_metrics_memory.py (3.5M rows without bootstrap: 3.1 GiB)."""
BASE_BYTES = 800 * 2**20  # the libraries imported before any row is read


def _count_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(2**24), b"")) - 1


def _state_memory(path: Path, bootstrap: int) -> None:
    """One info line for a large file: what the run will take, before it takes it."""
    from ctframe.base.filenames import escape_path
    from ctframe.evaluation.bootstrap import bootstrap_peak_bytes

    if not path.is_file() or path.stat().st_size < 4 * LARGE_FILE_ROWS:  # a row takes 4 bytes or more
        return
    rows = _count_rows(path)
    if rows <= LARGE_FILE_ROWS:
        return
    rows_bytes, resampling = BASE_BYTES + rows * BYTES_PER_ROW, bootstrap_peak_bytes(rows, bootstrap)
    peak = (rows_bytes + resampling) / 2**30
    shared.err.print(
        f"info: {escape_path(path)}: {rows:,} rows, estimated peak memory {peak:.1f} GiB "
        f"({rows_bytes / 2**30:.1f} GiB for the rows, {resampling / 2**30:.1f} GiB for the bootstrap "
        "whatever the number of resamples)",
        markup=False,
    )


@app.command()
def metrics(
    predictions: Annotated[Path, typer.Argument(help="a predictions CSV (true_class, p_<class> columns)")],
    positive: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--positive", help="the positive class (default: the file's positive_class column)"),
    ] = None,
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--threshold", min=0.0, max=1.0, help="decision threshold (default: the file's or 0.5)"),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help="folder for metrics and report (default: <file>_metrics; one that holds files: --force)",
        ),
    ] = None,
    metric: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--metric", help="metric component to compute (repeatable; default: all installed)"),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="bootstrap resamples for CIs")] = 1000,
    subgroups: SubgroupsOption = None,
    subgroup_column: SubgroupColumnOption = None,
    true_column: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--true-column", help="another tool's label column (class names, or 0/1 with --classes)"
        ),
    ] = None,
    score_column: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--score-column", help="another tool's column with the positive class's probability"),
    ] = None,
    classes: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--classes", help="NEGATIVE,POSITIVE: what labels 0 and 1 mean, the score is for the second"
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Score any predictions file: metrics with bootstrap CIs, calibration and an HTML report."""
    from ctframe.storage.outputs import claim_folder
    from ctframe.workflows.prediction_files import Columns
    from ctframe.workflows.scoring import score_predictions

    names = tuple(name.strip() for name in (classes or "").split(",") if name.strip())
    columns = Columns(true_column, score_column, names)

    output = output or predictions.with_name(f"{predictions.stem}_metrics")  # score_predictions' default
    inputs = [predictions, *([subgroups] if subgroups else [])]
    claim_folder(output, force=force, inputs=inputs)
    _state_memory(predictions, bootstrap)
    folder = score_predictions(
        predictions,
        positive=positive,
        threshold=threshold,
        output=output,
        metric_names=metric or (),
        bootstrap=bootstrap,
        subgroups=subgroups,
        subgroup_columns=subgroup_column or (),
        columns=columns if columns.mapped else None,
        console=shared.err,
    )
    shared.print_result("metrics and report", folder, as_json)
