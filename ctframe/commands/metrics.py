"""``ctframe metrics``: score any predictions file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import SubgroupColumnOption, SubgroupsOption, app


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
        typer.Option("--output", "-o", help="folder for metrics and report (default: <file>_metrics)"),
    ] = None,
    metric: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--metric", help="metric component to compute (repeatable; default: all installed)"),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="bootstrap resamples for CIs")] = 1000,
    subgroups: SubgroupsOption = None,
    subgroup_column: SubgroupColumnOption = None,
) -> None:
    """Score any predictions file: metrics with bootstrap CIs, calibration and an HTML report."""
    from ctframe.workflows.scoring import score_predictions

    folder = score_predictions(
        predictions,
        positive=positive,
        threshold=threshold,
        output=output,
        metric_names=metric or (),
        bootstrap=bootstrap,
        subgroups=subgroups,
        subgroup_columns=subgroup_column or (),
        console=shared.err,
    )
    shared.out.print(f"metrics and report: {folder}")
