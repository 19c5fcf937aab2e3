"""``ctframe explain``: class activation maps over images, as overlay PNGs and a CSV.

A core command, so it exists whichever plugins load; the CAM methods it offers are registered explainers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.base.errors import CtframeError
from ctframe.commands import shared
from ctframe.commands.shared import (
    BatchSize,
    ComponentSet,
    ForceOption,
    ImagePaths,
    ModelArgument,
    ModelKey,
    OnBadImage,
    app,
)


@app.command("explain")
def explain_command(  # one parameter per command-line option
    model: ModelArgument,
    paths: ImagePaths,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="folder for the overlays and the CSV (new or empty; or --force)"),
    ],
    method: Annotated[
        str,
        typer.Option("--method", help="gradcam, gradcam++, scorecam, ... (list-plugins --kind explainer)"),
    ] = "gradcam",
    targets: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--target", "-t", help="a class name, 'predicted' or 'all' (repeatable)"),
    ] = None,
    key: ModelKey = None,
    on_bad_image: OnBadImage = "error",
    batch_size: BatchSize = 16,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps")] = "cpu",
    overrides: ComponentSet = None,
    force: ForceOption = False,
) -> None:
    """Class activation maps over images: one overlay PNG per image and class, and a CSV."""
    from ctframe.runtime.model import resolve_device
    from ctframe.workflows.explain import explain_files

    try:
        device = resolve_device(device)
    except ValueError as error:
        raise CtframeError(str(error)) from None
    result = explain_files(
        model,
        paths,
        output,
        method=method,
        targets=targets or ("predicted",),
        model_key=key,
        options=shared.pairs(overrides),
        on_bad_image=shared.on_bad_image(on_bad_image),
        batch_size=batch_size,
        device=device,
        force=force,
        console=shared.err,
    )
    shared.print_skipped(result.skipped)
    height, width = result.map_size
    if height * width == 1:
        shared.err.print(
            f"warning: the model's feature map is 1x1 for {'x'.join(map(str, result.image_size))} "
            "images, so the overlays cannot show where it looks (use a model trained on larger images)",
            markup=False,
        )
    shared.out.print(
        f"wrote {result.overlays} overlays ({height}x{width} maps) for {result.images} images and "
        f"{result.csv}",
        markup=False,
    )
