"""``ctframe demo-data FOLDER --format NAME``: a synthetic data set from the plugin that offers NAME."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import ForceOption, app


@app.command("demo-data")
def demo_data(
    folder: Annotated[
        Path,
        typer.Argument(
            help="folder to write into (created; one that holds other files only with --force; one written "
            "by demo-data before is completed or left alone)"
        ),
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="a format a plugin offers, such as png or dicom (a wrong one lists them)"
        ),
    ] = "png",
    count: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--count", help="how many: images per class (png) or patients (dicom); default per format"
        ),
    ] = None,
    size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--size", help="image side in pixels (default per format)"),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="random seed (the same seed writes the same files)")
    ] = 0,
    force: ForceOption = False,
) -> None:
    """Write a small deterministic synthetic data set that a shipped recipe can train on."""
    from ctframe.storage.outputs import claim_folder
    from ctframe.workflows.demo import holds_demo_data, write_demo

    # a folder demo-data wrote before is safe to write again: each format completes or leaves its set
    claim_folder(folder, force=force or holds_demo_data(folder), option="FOLDER")

    shared.out.print(write_demo(folder, format, count, size, seed), markup=False)
