"""``ctframe predict``: class probabilities for new images, written to a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ctframe.commands import shared
from ctframe.commands.shared import (
    BatchSize,
    ForceOption,
    ImagePaths,
    ModelArgument,
    ModelKey,
    OnBadImage,
    app,
)
from ctframe.registry.settings import PREDICTION_BATCH


@app.command()
def predict(
    model: ModelArgument,
    paths: ImagePaths,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV to write (an existing one only with --force)")
    ] = Path("predictions.csv"),
    key: ModelKey = None,
    on_bad_image: OnBadImage = "error",
    batch_size: BatchSize = PREDICTION_BATCH,
    groups: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--groups",
            help="CSV of file,group (or patient_id, ...): also one row per group, to <output>_<unit>.csv",
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Predict class probabilities for new images with a trained model (per image, and per group when
    the files' groups are known)."""
    from ctframe.evaluation.aggregate import plural
    from ctframe.workflows.predict import left_out_text, predict_files

    result = predict_files(
        model,
        paths,
        output,
        model_key=key,
        on_bad_image=shared.on_bad_image(on_bad_image),
        batch_size=batch_size,
        groups=groups,
        force=force,
        console=shared.err,
    )
    shared.print_skipped(result.skipped)
    if result.ignored:
        shared.err.print(left_out_text(result.ignored), markup=False, highlight=False)
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    shared.out.print(
        f"wrote {result.output} ({result.count} images{skipped}; {result.images_per_s:.1f} images/s, "
        f"model loaded in {result.load_seconds:.1f} s)"
    )
    if result.group_output is not None:
        shared.out.print(f"wrote {result.group_output} ({result.groups} {plural(result.unit)})")
