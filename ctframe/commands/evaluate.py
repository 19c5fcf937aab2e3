"""``ctframe evaluate``: every model of a run on external labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import (
    ForceOption,
    JsonOption,
    OnBadImage,
    SubgroupColumnOption,
    SubgroupsOption,
    app,
)


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
        typer.Option(
            "--name",
            help="results go to RUN/external/NAME (default: the data folder's name; existing: --force)",
        ),
    ] = None,
    on_bad_image: OnBadImage = "error",
    groups: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--groups",
            help="CSV of file,group (or patient_id, ...), e.g. UCSD's patients.csv: also report per group",
        ),
    ] = None,
    classes: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--classes",
            help="the class sub-folders to read, comma-separated (default: every sub-folder holding images)",
        ),
    ] = None,
    subgroups: SubgroupsOption = None,
    subgroup_column: SubgroupColumnOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Evaluate every model of a run on external labelled data, at each model's stored threshold."""
    from ctframe.storage.layout import EXTERNAL_EVALUATION
    from ctframe.storage.outputs import claim_folder, plain_name, replacing
    from ctframe.workflows.external import evaluate_external, evaluation_folder_name

    # claimed before any image is read; with --force the old results go only once the new ones stand
    target = EXTERNAL_EVALUATION.path(
        run_dir, evaluation_folder_name(None if name is None else plain_name(name, "--name"), data)
    )
    claim_folder(target, force=force, option="--name", owned=(EXTERNAL_EVALUATION,))
    with replacing(target, run_dir / f".replaced-external-{target.name}"):
        folder = evaluate_external(
            run_dir,
            data,
            class_map=class_map,
            name=target.name,
            on_bad_image=shared.on_bad_image(on_bad_image),
            groups=groups,
            classes=[name.strip() for name in (classes or "").split(",") if name.strip()],
            subgroups=subgroups,
            subgroup_columns=subgroup_column or (),
            console=shared.err,
        )
    shared.print_result("external evaluation", folder, as_json)
