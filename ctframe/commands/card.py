"""``ctframe card``: a run's model card in Markdown, each item citing the run file it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import ForceOption, app


@app.command("card")
def card_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--output", "-o", help="where to write the card (default: RUN/model_card.md; existing: --force)"
        ),
    ] = None,
    intended_use: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--intended-use",
            help="Markdown with '## Intended use', '## Limitations', '## Ethical considerations', "
            "'## Contact' sections (docs/card.md)",
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Write the model card of RUN_DIR (docs/card.md)."""
    from ctframe.workflows.card import write_card

    shared.out.print(f"wrote {write_card(run_dir, output, intended_use, force)}")
