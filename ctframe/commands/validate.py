"""``ctframe validate``: check a recipe without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctframe.commands import shared
from ctframe.commands.shared import SetOption, app


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe TOML file")],
    overrides: SetOption = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="only the schema and the components' cheap checks")
    ] = False,
) -> None:
    """Check RECIPE without training: schema, components, device, data, model."""
    from ctframe.registry.recipe import load_recipe
    from ctframe.workflows.assembly import check_recipe

    loaded = load_recipe(recipe, overrides or ())
    for line in check_recipe(loaded, quick=quick):
        shared.out.print(f"  {line}")
    shared.out.print(f"{recipe}: OK")
