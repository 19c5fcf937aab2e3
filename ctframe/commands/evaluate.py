"""``ctframe evaluate``: every model of a run on external labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import OnBadImage, SubgroupColumnOption, SubgroupsOption, app


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="a completed run directory")],
    data: Annotated[
        Path, typer.Option("--data", help="labelled folder (one sub-folder per class) or a dataset recipe")
    ],
    class_map: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--class-map", help="DATA=MODEL class pairs, e.g. CT_COVID=COVID,CT_NonCOVID=non-COVID"),
    ] = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="results go to RUN/external/NAME (default: the data folder's name)"),
    ] = None,
    on_bad_image: OnBadImage = "error",
    groups: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--groups",
            help="CSV of file,group (or patient_id, ...), e.g. UCSD's patients.csv: also report per group",
        ),
    ] = None,
    subgroups: SubgroupsOption = None,
    subgroup_column: SubgroupColumnOption = None,
) -> None:
    """Evaluate every model of a run on external labelled data, at each model's stored threshold."""
    from ctframe.workflows.external import evaluate_external

    folder = evaluate_external(
        run_dir,
        data,
        class_map=class_map,
        name=name,
        on_bad_image=shared.on_bad_image(on_bad_image),
        groups=groups,
        subgroups=subgroups,
        subgroup_columns=subgroup_column or (),
        console=shared.err,
    )
    shared.out.print(f"external evaluation: {folder}")
