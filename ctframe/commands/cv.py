"""``ctframe cv``: cross-validate a recipe, or finish an interrupted cross-validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.base.errors import CtframeError
from ctframe.commands import shared
from ctframe.commands.shared import JsonOption, SetOption, app


@app.command()
def cv(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe TOML file")] = None,  # noqa: UP045
    folds: Annotated[int, typer.Option("--folds", "-k", min=2, help="number of folds")] = 5,
    overrides: SetOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="folder for the CV directory")  # noqa: UP045
    ] = None,
    resume: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--resume", help="finish the interrupted cross-validation in this folder"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Cross-validate RECIPE on K stratified, group-disjoint folds; pooled out-of-fold metrics."""
    from ctframe.runtime.distributed import world_size
    from ctframe.workflows.crossval import resume_cv, start_cv

    if world_size() > 1:  # how the command was started, so the command checks it
        raise CtframeError("ctframe cv runs in one process, not under torchrun; start it with ctframe cv")
    if resume is not None:
        if recipe is not None or overrides or output is not None:
            raise CtframeError("--resume takes only the CV folder; it reuses that cross-validation's plan")
        folder = resume_cv(resume, console=shared.err)
    elif recipe is None:
        raise CtframeError("name a recipe file (ctframe cv RECIPE --folds K) or use --resume CV_DIR")
    else:
        folder = start_cv(recipe, folds, overrides or (), output=output, console=shared.err)
    shared.print_result("cross-validation", folder, as_json)
