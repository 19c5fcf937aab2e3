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
from ctframe.runtime.loading import LoadedModel, check_reading
from ctframe.runtime.predict import PredictSettings, predict_dataset
from ctframe.runtime.recalibration import calibrated_probabilities
from ctframe.runtime.shared_prefix import predict_shared, shared_segments
from ctframe.storage.modelfile import ModelInfo

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
    check_reading(registry, info)  # one line naming the first stored option that does not fit
    options = component.options.model_validate(dict(record.get("options", {})))
    context = BuildContext(seed=0, device="cpu", recipe_dir=info.path.parent)
    return component.reader(options, context)


def read_files(info: ModelInfo, paths: Sequence[Path], on_bad_image: str, registry: Registry) -> ReadFiles:
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, not {on_bad_image!r}")
    return file_reader(info, registry).read(list(map(Path, paths)), on_bad_image=on_bad_image)


# the loop's five inputs and the one optional record of skipped files that every consumer shares
def predict_with_progress(
    loaded: LoadedModel,
    images: Any,
    settings: PredictSettings,
    console: Console | None,
    label: str,
    skipped: list[tuple[str, str]] | None = None,
) -> Predictions:
    """The core prediction loop, with a progress bar on ``console`` when it is a terminal, and the model
    file's recalibration applied: every consumer of a stored model gets its calibrated probabilities.

    An image that only decoding finds unreadable stops with a one-line DataError naming its file; with
    ``skipped`` (``--on-bad-image skip``) it is left out and ``(file, reason)`` appended to it instead
    (:mod:`~ctframe.runtime.unreadable`)."""
    return predict_models_with_progress([loaded], images, settings, console, label, skipped)[0]


def same_architecture(models: Sequence[LoadedModel]) -> bool:
    first = models[0].classifier.state_dict()
    for model in models[1:]:
        state = model.classifier.state_dict()
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            return False
    return True


def predict_models_with_progress(
    models: Sequence[LoadedModel],
    images: Any,
    settings: PredictSettings,
    console: Console | None,
    label: str,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Predictions]:
    """:func:`predict_with_progress` for several models of one architecture at once: the leading
    backbone segments they share bit for bit run once per batch (:mod:`~ctframe.runtime.shared_prefix`),
    and an unreadable image is reported once."""
    on_unreadable = None if skipped is None else (lambda file, reason: skipped.append((file, reason)))
    states = [model.classifier.state_dict() for model in models]
    shared = shared_segments(models[0].classifier, states) if same_architecture(models) else 0

    def run(on_batch: Callable[[int], None] | None = None) -> list[Predictions]:
        how = {**asdict(settings), "on_unreadable": on_unreadable}
        if shared:
            raw = predict_shared(
                models[0].classifier, states, images, shared=shared, on_batch=on_batch, **how
            )
        else:
            raw = [predict_dataset(m.classifier, images, on_batch=on_batch, **how) for m in models]
        calibrated = []
        for model, predictions in zip(models, raw, strict=True):
            info = model.info
            probabilities = calibrated_probabilities(
                predictions.probabilities, info.calibration, info.positive_index
            )
            calibrated.append(replace(predictions, probabilities=probabilities))
        return calibrated

    if console is None or not console.is_terminal:
        return run()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    passes = 1 if shared or len(models) == 1 else len(models)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=len(images) * passes)
        return run(lambda count: progress.advance(task, count))
