"""``ctframe run``: train and evaluate a recipe in a new run directory, or resume an interrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.base.errors import CtframeError
from ctframe.commands import shared
from ctframe.commands.shared import JsonOption, SetOption, app


@app.command()
def run(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe TOML file")] = None,  # noqa: UP045
    overrides: SetOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="folder for the run directory")  # noqa: UP045
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option("--resume", help="continue the interrupted run in this folder")  # noqa: UP045
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate RECIPE, then train and evaluate it inside a new run directory."""
    from ctframe.registry.recipe import load_recipe
    from ctframe.runtime.distributed import is_main
    from ctframe.workflows.engine import resume_run, start_run

    if resume is not None:
        if recipe is not None or overrides or output is not None:
            raise CtframeError("--resume takes only the run directory; it reuses that run's recipe")
        result = resume_run(resume, console=shared.err)
    elif recipe is None:
        raise CtframeError("name a recipe file (ctframe run RECIPE) or use --resume RUN_DIR")
    else:
        result = start_run(load_recipe(recipe, overrides or ()), output=output, console=shared.err)
    if is_main():  # under torchrun the other processes stay quiet
        shared.print_result("run directory", result.run_dir.path, as_json)
