"""``ctframe predict``: class probabilities for new image files with a trained model, as a CSV."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctframe.evaluation.decision import predicted_labels
from ctframe.evaluation.outputs import write_predictions_csv
from ctframe.evaluation.results import EvaluationData
from ctframe.registry.plugins import Registry, get_registry
from ctframe.runtime.inference import predict_with_progress, read_files
from ctframe.runtime.loading import load_model
from ctframe.runtime.predict import PredictSettings
from ctframe.storage.modelfile import ModelFileError, find_model

if TYPE_CHECKING:
    from rich.console import Console


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


# keyword-only options with defaults, one per option of `ctframe predict`: the command's library face
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
    registry = registry or get_registry()
    started = time.perf_counter()
    loaded = load_model(find_model(model_or_run, model_key), registry, device=device)
    loaded_at = time.perf_counter()
    info = loaded.info
    read = read_files(info, paths, on_bad_image, registry)
    if len(read.images) == 0:
        raise ModelFileError("no image files to predict on" + (" (all were skipped)" if read.skipped else ""))
    settings = PredictSettings(device, precision, batch_size, read.num_workers)
    predictions = predict_with_progress(loaded, read.images, settings, console, f"predict ({info.key})")
    threshold = info.threshold
    decision = 0.5 if threshold is None else threshold
    predicted = (
        predicted_labels(predictions.probabilities, info.positive_index, decision)
        if len(info.class_names) == 2
        else np.argmax(predictions.probabilities, axis=1)
    )
    data = EvaluationData(info.class_names, info.positive_class, read.files)
    write_predictions_csv(Path(output), predictions, predicted, data, threshold, labelled=False)
    finished = time.perf_counter()
    count = len(predictions.sample_ids)
    return PredictRun(Path(output), count, list(read.skipped), loaded_at - started, finished - loaded_at)
