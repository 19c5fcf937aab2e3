"""``ctframe export`` and ``ctframe explain``: core commands that start from a model file.

They are registered on the core application (``ctframe.commands.app`` imports this module), so they exist
whichever plugins load; the formats and CAM methods they offer are registered components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.base.errors import CtframeError
from ctframe.commands.app import OnBadImage, _on_bad_image, _pairs, app, err, out

ModelArgument = Annotated[Path, typer.Argument(help="a model .json, or a run directory")]
ModelKey = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional here
    typer.Option("--model", "-m", help="which model of a run (default: the last one, e.g. finetuned)"),
]
ComponentSet = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--set", "-s", help="an option of the exporter or explainer: key=value (repeatable)"),
]


@app.command("export")
def export_command(
    model: ModelArgument,
    export_format: Annotated[
        str, typer.Option("--format", "-f", help="onnx or pt2, or a format a plugin adds (list-plugins)")
    ],
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="file to write (default: <model key>.<format> here)"),
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
    overrides: ComponentSet = None,
) -> None:
    """Export a trained model (uint8 RGB in, probabilities out) and check it against PyTorch."""
    from ctframe.workflows.export import export_model

    options: dict[str, object] = dict(_pairs(overrides))
    if opset is not None:
        if "opset" in options:
            raise CtframeError("give the opset once: --opset or --set opset=..., not both")
        options["opset"] = opset
    result = export_model(
        model, export_format, output, model_key=key, options=options, images=images or (), tolerance=tolerance
    )
    out.print(result.summary(), markup=False)
    out.print(f"wrote {result.path} and {result.sidecar}", markup=False)


@app.command("explain")
def explain_command(
    model: ModelArgument,
    paths: Annotated[list[Path], typer.Argument(help="image files or folders (searched recursively)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the overlays and the CSV")],
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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per step")] = 16,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps")] = "cpu",
    overrides: ComponentSet = None,
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
        options=_pairs(overrides),
        on_bad_image=_on_bad_image(on_bad_image),
        batch_size=batch_size,
        device=device,
        console=err,
    )
    for file, reason in result.skipped:
        err.print(f"skipped {file}: {reason}", markup=False)
    height, width = result.map_size
    if height * width == 1:
        err.print(
            f"warning: the model's feature map is 1x1 for {'x'.join(map(str, result.image_size))} "
            "images, so the overlays cannot show where it looks (use a model trained on larger images)",
            markup=False,
        )
    out.print(
        f"wrote {result.overlays} overlays ({height}x{width} maps) for {result.images} images and "
        f"{result.csv}",
        markup=False,
    )
