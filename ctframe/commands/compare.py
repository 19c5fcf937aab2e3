"""``ctframe compare``: runs side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ctframe.commands import shared
from ctframe.commands.shared import JsonOption, app


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories")],
    as_json: JsonOption = False,
) -> None:
    """Show runs side by side; warn when they differ in positive class, classes, test set or seed."""
    from ctframe.workflows.compare import compare_runs

    comparison = compare_runs(run_dirs)
    if as_json:
        print(json.dumps(comparison.as_dict(), indent=2, default=str))
        return
    shared.out.print(comparison)
    for line in comparison.warnings():
        shared.err.print(f"warning: {line}", markup=False, highlight=False)
