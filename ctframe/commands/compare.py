"""``ctframe compare``: runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctframe.commands import shared
from ctframe.commands.shared import app


@app.command()
def compare(run_dirs: Annotated[list[Path], typer.Argument(help="run directories")]) -> None:
    """Show runs side by side."""
    from ctframe.workflows.compare import compare_runs

    shared.out.print(compare_runs(run_dirs))
