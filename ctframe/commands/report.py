"""``ctframe report``: regenerate a run directory's report.html and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctframe.commands import shared
from ctframe.commands.shared import app


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Regenerate report.html and the plots of RUN_DIR."""
    from ctframe.report import build_report

    shared.out.print(f"wrote {build_report(run_dir)}")
