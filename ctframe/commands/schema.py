"""``ctframe schema``: the JSON Schema of recipes for the installed plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import ForceOption, app
from ctframe.storage.files import write_text
from ctframe.storage.outputs import claim_file


@app.command()
def schema(
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="write to this file (an existing one only with --force)"),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Print the JSON Schema of recipes for the installed plugins."""
    from ctframe.registry.plugins import get_registry
    from ctframe.registry.schema import recipe_json_schema

    if output is not None:
        claim_file(output, force=force)
    text = json.dumps(recipe_json_schema(get_registry()), indent=2, default=str)
    if output is None:
        print(text)
    else:
        write_text(output, text + "\n")
        shared.out.print(f"wrote {output}")
