"""``ctframe demo-data DIR``: write the synthetic demo data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def add_commands(cli: typer.Typer) -> None:
    @cli.command("demo-data")
    def demo_data(
        folder: Annotated[Path, typer.Argument(help="folder to create (COVID/ and non-COVID/ go inside)")],
        per_class: Annotated[int, typer.Option(help="images per class")] = 80,
        size: Annotated[int, typer.Option(help="image side in pixels")] = 96,
        seed: Annotated[int, typer.Option(help="random seed")] = 0,
    ) -> None:
        """Write a small synthetic CT-like two-class image folder (deterministic; safe to re-run)."""
        from ctframe_folder_split.demo import generate_demo_data

        root = generate_demo_data(folder, per_class=per_class, size=size, seed=seed)
        typer.echo(f"demo data ready in {root} ({per_class} images per class, {size} px)")
