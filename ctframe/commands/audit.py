"""``ctframe audit``: a dataset folder's counts, formats, duplicates and shortcuts, as tables or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ctframe.commands import shared
from ctframe.commands.shared import JsonOption, app, pairs


@app.command()
def audit(
    root: Annotated[Path, typer.Argument(help="dataset folder")],
    overrides: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="key=value passed to the auditor")  # noqa: UP045
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Audit a dataset folder: counts, formats, duplicates, shortcuts."""
    from ctframe.workflows.audit import audit_folder

    report = audit_folder(root, pairs(overrides))
    if as_json:
        print(json.dumps(asdict(report), indent=2, default=str))
        return
    shared.out.print(f"[bold]{report.title}[/bold]")
    for section in report.sections:
        table = Table(*section.columns, title=section.title)
        for row in section.rows:
            table.add_row(*(str(cell) for cell in row))
        shared.out.print(table)
    for warning in report.warnings:
        shared.out.print(f"[yellow]warning:[/yellow] {warning}")
