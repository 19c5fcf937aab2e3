"""Using a trained model outside its run: read files as training did and predict them.

Shared by ``ctframe predict``, ``ctframe evaluate``, ``export``, ``explain`` and the report's gallery:
the model file names the dataset component that read its training images, and that component's reader
decodes new files the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ctframe.base.contracts import BuildContext, Kind, ReadFiles
from ctframe.base.errors import PluginError
from ctframe.runtime.loading import LoadedModel
from ctframe.runtime.predict import PredictSettings, predict_dataset
from ctframe.runtime.recalibration import calibrated_probabilities
from ctframe.storage.modelfile import ModelFileError, ModelInfo

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.base.training import Predictions
    from ctframe.registry.plugins import Registry

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
    loaded: LoadedModel, images: Any, settings: PredictSettings, console: Console | None, label: str
) -> Predictions:
    """The core prediction loop, with a progress bar on ``console`` when it is a terminal, and the model
    file's recalibration applied: every consumer of a stored model gets its calibrated probabilities."""
    info = loaded.info

    def run(on_batch: Callable[[int], None] | None = None) -> Predictions:
        raw = predict_dataset(loaded.classifier, images, **asdict(settings), on_batch=on_batch)
        calibrated = calibrated_probabilities(raw.probabilities, info.calibration, info.positive_index)
        return replace(raw, probabilities=calibrated)

    if console is None or not console.is_terminal:
        return run()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=len(images))
        return run(lambda count: progress.advance(task, count))
