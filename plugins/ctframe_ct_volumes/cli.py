"""``ctframe demo-dicom DIR``: write a small synthetic DICOM CT set that the ct_volumes dataset reads.

A command of this plugin rather than ``demo-data --format dicom``: ``demo-data`` belongs to
folder_split, and a plugin never imports another plugin, so each plugin writes its own demo data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def add_commands(cli: typer.Typer) -> None:
    @cli.command("demo-dicom")
    def demo_dicom(
        folder: Annotated[
            Path, typer.Argument(help="new or empty folder (caseNNN/ and labels.csv go inside)")
        ],
        patients: Annotated[int, typer.Option(help="patients, alternating normal / nodule")] = 20,
        slices: Annotated[int, typer.Option(help="axial slices per patient")] = 16,
        size: Annotated[int, typer.Option(help="slice side in pixels")] = 64,
        seed: Annotated[int, typer.Option(help="random seed")] = 0,
    ) -> None:
        """Write synthetic CT series (one per patient, 12-bit DICOM) and labels.csv (deterministic)."""
        from ctframe_ct_volumes.synthetic import write_synthetic_set

        written = write_synthetic_set(folder, patients=patients, slices=slices, size=(size, size), seed=seed)
        typer.echo(
            f"DICOM demo data ready in {written.root} ({patients} patients x {slices} slices, {size} px; "
            f"labels in {written.labels.name})"
        )
