"""``ctframe export``: a trained model in a deployable format, checked against PyTorch.

A core command, so it exists whichever plugins load; the formats it offers are registered exporters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.base.errors import CtframeError
from ctframe.commands import shared
from ctframe.commands.shared import ComponentSet, ForceOption, ModelArgument, ModelKey, app, pairs


@app.command("export")
def export_command(  # one parameter per command-line option
    model: ModelArgument,
    export_format: Annotated[
        str, typer.Option("--format", "-f", help="onnx or pt2, or a format a plugin adds (list-plugins)")
    ],
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--output", "-o", help="file to write (default: <model key>.<format> here; existing: --force)"
        ),
    ] = None,
    key: ModelKey = None,
    opset: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--opset", min=1, help="ONNX opset version (same as --set opset=N)"),
    ] = None,
    images: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option("--images", help="images to check the export on (default: the run's test split)"),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0, help="largest probability difference the check accepts"),
    ] = 1e-4,  # ctframe.workflows.export.TOLERANCE, not imported here: that module loads torch
    decision: Annotated[
        bool,
        typer.Option(
            "--decision", help="also output the decision and, with a conformal rule, the set (as predict)"
        ),
    ] = False,
    overrides: ComponentSet = None,
    force: ForceOption = False,
) -> None:
    """Export a trained model (uint8 RGB in, probabilities out) and check it against PyTorch."""
    from ctframe.workflows.export import export_model

    options: dict[str, object] = dict(pairs(overrides))
    if opset is not None:
        if "opset" in options:
            raise CtframeError("give the opset once: --opset or --set opset=..., not both")
        options["opset"] = opset
    result = export_model(
        model,
        export_format,
        output,
        model_key=key,
        options=options,
        images=images or (),
        tolerance=tolerance,
        decision=decision,
        force=force,
    )
    shared.out.print(result.summary(), markup=False)
    shared.out.print(f"wrote {result.path} and {result.sidecar}", markup=False)
