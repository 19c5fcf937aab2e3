"""``ctframe predict``: class probabilities for new images, written to a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctframe.commands import shared
from ctframe.commands.shared import BatchSize, ImagePaths, ModelArgument, ModelKey, OnBadImage, app


@app.command()
def predict(
    model: ModelArgument,
    paths: ImagePaths,
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write")] = Path("predictions.csv"),
    key: ModelKey = None,
    on_bad_image: OnBadImage = "error",
    batch_size: BatchSize = 32,
) -> None:
    """Predict class probabilities for new images with a trained model."""
    from ctframe.workflows.predict import predict_files

    result = predict_files(
        model,
        paths,
        output,
        model_key=key,
        on_bad_image=shared.on_bad_image(on_bad_image),
        batch_size=batch_size,
        console=shared.err,
    )
    shared.print_skipped(result.skipped)
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    shared.out.print(
        f"wrote {result.output} ({result.count} images{skipped}; {result.images_per_s:.1f} images/s, "
        f"model loaded in {result.load_seconds:.1f} s)"
    )
