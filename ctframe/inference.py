"""Using a trained model outside its run: read files as training did, predict, write a CSV.

Shared by ``ctframe predict`` and ``ctframe evaluate``: the model file names the dataset component
that read its training images, and that component's reader decodes new files the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.contracts import BuildContext, Kind, ReadFiles
from ctframe.errors import PluginError
from ctframe.modelfile import LoadedModel, ModelFileError, ModelInfo

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.contracts import Predictions
    from ctframe.plugins import Registry

ON_BAD_IMAGE = ("error", "skip")


def file_reader(info: ModelInfo, registry: Registry) -> Any:
    """The reader of the dataset component the model was trained with, with the stored options."""
    record = info.reading["dataset"]
    name = str(record.get("component"))
    component = registry.get(Kind.DATASET, name)
    if component is None:
        raise PluginError(
            f"{info.path}: images were read by dataset {name!r} (plugin {record.get('plugin')!r}), which is "
            "not installed; install it to read files as training did"
        )
    if component.reader is None:
        raise PluginError(
            f"dataset {name!r} (plugin {component.plugin!r}) cannot read single files (it registers no "
            "reader), so ctframe cannot predict on files for models trained on it"
        )
    try:
        options = component.options.model_validate(dict(record.get("options", {})))
    except Exception as error:
        raise ModelFileError(
            f"{info.path}: the stored dataset options no longer fit {name!r}: {error}"
        ) from None
    context = BuildContext(seed=0, device="cpu", recipe_dir=info.path.parent)
    return component.reader(options, context)


def read_files(info: ModelInfo, paths: Sequence[Path], on_bad_image: str, registry: Registry) -> ReadFiles:
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, not {on_bad_image!r}")
    return file_reader(info, registry).read(list(map(Path, paths)), on_bad_image=on_bad_image)


def predict_with_progress(
    loaded: LoadedModel,
    images: Any,
    device: str,
    precision: str,
    batch_size: int,
    console: Console | None,
    label: str,
    num_workers: int = 0,
) -> Predictions:
    """The core prediction loop, with a progress bar on ``console`` when it is a terminal."""
    from ctframe.predict import predict_dataset

    if console is None or not console.is_terminal:
        return predict_dataset(
            loaded.classifier,
            images,
            device=device,
            precision=precision,
            batch_size=batch_size,
            num_workers=num_workers,
        )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=len(images))
        advance: Callable[[int], None] = lambda count: progress.advance(task, count)  # noqa: E731
        return predict_dataset(
            loaded.classifier,
            images,
            device=device,
            precision=precision,
            batch_size=batch_size,
            num_workers=num_workers,
            on_batch=advance,
        )


@dataclass(frozen=True)
class PredictRun:
    output: Path
    count: int
    skipped: list[tuple[str, str]]
    load_seconds: float
    """Rebuilding the model and loading its weights (once per command)."""
    predict_seconds: float
    """Reading, decoding and predicting every file, and writing the CSV."""

    @property
    def images_per_s(self) -> float:
        return self.count / self.predict_seconds if self.predict_seconds > 0 else float("nan")


def predict_files(
    model_or_run: Path,
    paths: Sequence[Path],
    output: Path,
    *,
    model_key: str | None = None,
    on_bad_image: str = "error",
    batch_size: int = 32,
    precision: str = "fp32",
    device: str = "cpu",
    registry: Registry | None = None,
    console: Console | None = None,
) -> PredictRun:
    """Predict every image file under ``paths`` into the CSV ``output``."""
    import numpy as np

    from ctframe.evaluation.decision import predicted_labels
    from ctframe.evaluation.outputs import write_predictions_csv
    from ctframe.modelfile import find_model, load_model
    from ctframe.plugins import get_registry

    registry = registry or get_registry()
    started = time.perf_counter()
    loaded = load_model(find_model(model_or_run, model_key), registry, device=device)
    loaded_at = time.perf_counter()
    info = loaded.info
    read = read_files(info, paths, on_bad_image, registry)
    if len(read.images) == 0:
        raise ModelFileError("no image files to predict on" + (" (all were skipped)" if read.skipped else ""))
    predictions = predict_with_progress(
        loaded, read.images, device, precision, batch_size, console, f"predict ({info.key})", read.num_workers
    )
    threshold = info.threshold
    decision = 0.5 if threshold is None else threshold
    predicted = (
        predicted_labels(predictions.probabilities, info.positive_index, decision)
        if len(info.class_names) == 2
        else np.argmax(predictions.probabilities, axis=1)
    )
    write_predictions_csv(
        Path(output),
        predictions,
        predicted,
        info.class_names,
        info.positive_index,
        threshold,
        read.files,
        labelled=False,
    )
    finished = time.perf_counter()
    count = len(predictions.sample_ids)
    return PredictRun(Path(output), count, list(read.skipped), loaded_at - started, finished - loaded_at)
