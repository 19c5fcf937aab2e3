"""``ctframe explain``: CAM overlays of image files and a CSV of what was explained.

The mechanics (how every explainer is run) are in :mod:`ctframe.runtime.explaining`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ctframe.base.filenames import ensure_escaped
from ctframe.evaluation.decision import predicted_labels
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.registry.plugins import Registry, get_registry
from ctframe.runtime.explaining import (
    DEFAULT_METHOD,
    ExplainError,
    blend,
    cam_maps,
    feature_map_size,
    make_explainer,
)
from ctframe.runtime.inference import predict_with_progress, read_files
from ctframe.runtime.loading import load_model
from ctframe.runtime.predict import PredictSettings
from ctframe.runtime.unreadable import decoded_items
from ctframe.storage.files import atomic_open, write_bytes
from ctframe.storage.modelfile import ModelFileError, ModelInfo, find_model
from ctframe.storage.outputs import claim_folder

if TYPE_CHECKING:
    from rich.console import Console

    from ctframe.base.contracts import ReadFiles
    from ctframe.base.training import Predictions

CSV_NAME = "explanations.csv"

# ------------------------------------------------------------------------------------ ctframe explain


@dataclass(frozen=True)
class ExplainResult:
    csv: Path
    images: int
    overlays: int
    skipped: list[tuple[str, str]]
    map_size: tuple[int, int]
    """Resolution of the CAMs before they are resized to the images (the cam_layer map's size)."""
    image_size: tuple[int, int]


def target_classes(
    wanted: Sequence[str], class_names: Sequence[str], predicted: np.ndarray
) -> list[list[int]]:
    """Per image, the class indices to explain: ``predicted``, ``all`` or class names (any mix)."""
    fixed: set[int] = set()
    use_predicted = False
    for entry in wanted or ("predicted",):
        if entry == "predicted":
            use_predicted = True
        elif entry == "all":
            fixed.update(range(len(class_names)))
        elif entry in class_names:
            fixed.add(class_names.index(entry))
        else:
            choices = ", ".join(["predicted", "all", *class_names])
            raise ExplainError(f"--target {entry!r}: not a class of this model; choose from {choices}")
    return [sorted(fixed | ({int(p)} if use_predicted else set())) for p in predicted]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def _png(rgb: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _read_images(
    info: ModelInfo, paths: Sequence[Path], on_bad_image: str, registry: Registry
) -> tuple[ReadFiles, list[tuple[str, str]], list[Any], torch.Tensor]:
    """The image files under ``paths`` as the model's dataset reads them: the files, those skipped, the
    readable items (decoded once, here) and their images stacked."""
    read = read_files(info, paths, on_bad_image, registry)
    skipped = list(read.skipped)
    late = (lambda file, reason: skipped.append((file, reason))) if on_bad_image == "skip" else None
    items = decoded_items(read.images, late)
    if not items:
        raise ModelFileError("no image files to explain" + (" (all were skipped)" if skipped else ""))
    return read, skipped, items, torch.stack([torch.as_tensor(item[0]) for item in items])


def _class_maps(
    classifier: Any, images: torch.Tensor, wanted: list[list[int]], explainer: Any, settings: PredictSettings
) -> Iterator[tuple[int, list[int], np.ndarray]]:
    """Per class some image is explained for: the class index, those images' rows and their CAMs."""
    for class_index in sorted({index for classes in wanted for index in classes}):
        rows = [i for i, classes in enumerate(wanted) if class_index in classes]
        targets = [class_index] * len(rows)
        device, batch_size = settings.device, settings.batch_size
        maps = cam_maps(classifier, images[rows], targets, explainer, device=device, batch_size=batch_size)
        yield class_index, rows, maps


def _write_table(
    table: Path,
    info: ModelInfo,
    predictions: Predictions,
    predicted: np.ndarray,
    files: Mapping[str, str],
    written: Mapping[tuple[int, int], str],
) -> Path:
    """``explanations.csv``: per image its file, probabilities, predicted class and overlay per class."""
    explained = sorted({class_index for _, class_index in written})
    header = ["file", "sample_id", "predicted_class", "positive_class", "threshold"]
    header += [PROBABILITY_PREFIX + name for name in info.class_names]
    header += [f"overlay_{info.class_names[c]}" for c in explained]
    with atomic_open(table) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, sample_id in enumerate(predictions.sample_ids):
            file = ensure_escaped(files.get(sample_id, ""))
            record = [file, ensure_escaped(sample_id), info.class_names[int(predicted[row])]]
            record += [info.positive_class, "" if info.threshold is None else f"{info.threshold:.8g}"]
            record += [f"{p:.8g}" for p in predictions.probabilities[row]]
            record += [written.get((row, c), "") for c in explained]
            writer.writerow(record)
    return table


# keyword-only options with defaults, one per option of `ctframe explain`: the command's library face
def explain_files(
    model_or_run: Path,
    paths: Sequence[Path],
    output: Path,
    *,
    method: str = DEFAULT_METHOD,
    targets: Sequence[str] = ("predicted",),
    model_key: str | None = None,
    options: Mapping[str, Any] | None = None,
    on_bad_image: str = "error",
    batch_size: int = 16,
    device: str = "cpu",
    force: bool = False,
    registry: Registry | None = None,
    console: Console | None = None,
) -> ExplainResult:
    """Overlay PNGs (one per image and target class) and ``explanations.csv`` (files, probabilities,
    predicted class, overlay per class) in the folder ``output``: a new or empty one, or with ``force``
    any folder outside a run (same-named files in it are replaced)."""
    registry = registry or get_registry()
    explainer = make_explainer(method, options, registry)
    model_file = find_model(model_or_run, model_key)
    output = claim_folder(output, force=force, inputs=paths)
    loaded = load_model(model_file, registry, device=device)
    info = loaded.info
    read, skipped, items, images = _read_images(info, paths, on_bad_image, registry)
    map_size = feature_map_size(loaded.classifier, images.shape[1:])  # fails early without a cam_layer
    settings = PredictSettings(device, "fp32", batch_size)
    predictions = predict_with_progress(loaded, items, settings, console, f"predict ({info.key})")
    threshold = 0.5 if info.threshold is None else info.threshold
    predicted = predicted_labels(predictions.probabilities, info.positive_index, threshold)
    wanted = target_classes(targets, info.class_names, predicted)
    output.mkdir(parents=True, exist_ok=True)
    stems = [Path(read.files.get(sample_id, sample_id)).stem for sample_id in predictions.sample_ids]
    written: dict[tuple[int, int], str] = {}
    for class_index, rows, maps in _class_maps(loaded.classifier, images, wanted, explainer, settings):
        class_name = info.class_names[class_index]
        for row, cam in zip(rows, maps, strict=True):
            name = f"{row:04d}-{_safe(stems[row])}-{_safe(class_name)}.png"
            write_bytes(output / name, _png(blend(images[row], cam)))
            written[(row, class_index)] = name
    table = _write_table(output / CSV_NAME, info, predictions, predicted, read.files, written)
    image_size = (int(images.shape[-2]), int(images.shape[-1]))
    return ExplainResult(table, len(images), len(written), skipped, map_size, image_size)
