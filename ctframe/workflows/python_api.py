"""ctframe from Python, for the common cases (docs/python.md).

``ctframe.run(recipe, **overrides)`` trains and evaluates a recipe as ``ctframe run`` does and returns
the :class:`Run`; ``ctframe.load_model(path)`` returns a :class:`Model` whose ``predict`` answers as
``ctframe predict`` does: the same reader, recalibration, stored threshold and conformal sets, returned
instead of written. Both raise ctframe's one-line errors (:class:`ctframe.CtframeError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctframe.base.errors import CtframeError, DataError
from ctframe.evaluation.conformal import ConformalRule
from ctframe.evaluation.decision import predicted_labels
from ctframe.registry.plugins import Registry, get_registry
from ctframe.registry.recipe import Recipe, load_recipe
from ctframe.registry.settings import PREDICTION_BATCH
from ctframe.runtime.inference import predict_with_progress, read_files
from ctframe.runtime.loading import LoadedModel
from ctframe.runtime.loading import load_model as load_checked
from ctframe.runtime.predict import PredictSettings
from ctframe.storage.layout import METRICS, REPORT
from ctframe.storage.modelfile import ModelInfo, find_model, models_of_run
from ctframe.workflows.engine import start_run


@dataclass(frozen=True)
class Answer:
    """What a model says about each image, in input order."""

    sample_ids: tuple[str, ...]
    files: tuple[str, ...]
    """The file each image came from ("" for images given as arrays)."""
    probabilities: np.ndarray
    """(images, classes), recalibrated when the model file says so."""
    predicted: tuple[str, ...]
    """The decided class per image: the stored threshold on the positive class (two classes), else
    the most probable class."""
    class_names: tuple[str, ...]
    sets: tuple[str, ...] | None = None
    """The conformal set per image ("a", "a|b", "" for empty) when the model has a conformal rule."""
    skipped: tuple[tuple[str, str], ...] = ()
    """``(file, reason)`` of images left out with ``on_bad_image="skip"``."""

    def __len__(self) -> int:
        return len(self.sample_ids)

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per image: sample_id, file, predicted, p_<class>..., set."""
        rows = []
        for k, sample in enumerate(self.sample_ids):
            row: dict[str, Any] = {"sample_id": sample, "file": self.files[k], "predicted": self.predicted[k]}
            scores = zip(self.class_names, self.probabilities[k], strict=True)
            row.update((f"p_{name}", float(p)) for name, p in scores)
            if self.sets is not None:
                row["set"] = self.sets[k]
            rows.append(row)
        return rows


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        return self.images[index], -1, f"image-{index:05d}"


def _as_images(given: Any, info: ModelInfo) -> torch.Tensor:
    """Arrays as the model's canonical input: uint8 RGB (3, H, W) at its image size, one or a batch."""
    images = torch.as_tensor(np.asarray(given))
    if images.dim() == 3:
        images = images.unsqueeze(0)
    shape = info.reading.get("shape")
    size = tuple(int(v) for v in shape[1:]) if shape else None
    if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise DataError(
            f"images as arrays must be uint8 RGB shaped (3, H, W) or (N, 3, H, W), got {tuple(images.shape)} "
            f"{images.dtype}; pass file paths to have the model's reader decode and resize them"
        )
    if size is not None and tuple(images.shape[2:]) != size:
        raise DataError(
            f"images are {tuple(images.shape[2:])} pixels, the model takes {size}; pass file paths"
        )
    return images


@dataclass(frozen=True)
class Model(LoadedModel):
    """A model file loaded and verified (``ctframe.load_model``): ``info`` and ``classifier`` as
    :class:`~ctframe.runtime.loading.LoadedModel`, plus :meth:`predict`."""

    registry: Registry | None = field(default=None, repr=False, compare=False)

    def predict(
        self, images_or_paths: Any, *, batch_size: int = PREDICTION_BATCH, on_bad_image: str = "error"
    ) -> Answer:
        """Probabilities, decisions and conformal sets for files and folders (a path or a list of them,
        read by the model's own dataset reader), or for uint8 arrays already in the model's input form."""
        info = self.info
        given = images_or_paths
        skipped: list[tuple[str, str]] = []
        if isinstance(given, str | Path) or (
            isinstance(given, Sequence) and given and all(isinstance(g, str | Path) for g in given)
        ):
            paths = [Path(given)] if isinstance(given, str | Path) else [Path(g) for g in given]
            read = read_files(info, paths, on_bad_image, self.registry or get_registry())
            dataset, files, workers = read.images, dict(read.files), read.num_workers
            skipped = list(read.skipped)
        else:
            dataset, files, workers = _Images(_as_images(given, info)), {}, 0
        settings = PredictSettings("cpu", "fp32", batch_size, workers)
        late = skipped if on_bad_image == "skip" else None
        predictions = predict_with_progress(self, dataset, settings, None, info.key, late)
        probabilities = predictions.probabilities
        if len(info.class_names) == 2:
            threshold = 0.5 if info.threshold is None else info.threshold
            decided = predicted_labels(probabilities, info.positive_index, threshold)
        else:
            decided = np.argmax(probabilities, axis=1)
        rule = None if info.conformal is None else ConformalRule.from_record(info.conformal, info.class_names)
        return Answer(
            tuple(predictions.sample_ids),
            tuple(files.get(s, "") for s in predictions.sample_ids),
            probabilities,
            tuple(info.class_names[int(k)] for k in decided),
            tuple(info.class_names),
            None if rule is None else tuple(rule.labels(probabilities)),
            tuple(skipped),
        )


def load_model(path: Path | str, registry: Registry | None = None, device: str = "cpu") -> Model:
    """A model file (or a run directory: its last model), verified and rebuilt; see :class:`Model`."""
    loaded = load_checked(find_model(Path(path)), registry, device=device)
    return Model(loaded.info, loaded.classifier, registry)


@dataclass(frozen=True)
class Run:
    """A finished run: its folder, metrics (``metrics.json`` as a dict), model files and report."""

    path: Path
    metrics: dict[str, Any]
    models: dict[str, Path]
    """Model key -> model file, in training order (the last is the final model)."""
    report: Path

    def model(self, key: str | None = None) -> Model:
        """One of the run's models, loaded (default: the last one)."""
        if key is not None and key not in self.models:
            raise CtframeError(f"{self.path}: no model {key!r}; the run has {list(self.models)}")
        return load_model(self.models[key] if key else list(self.models.values())[-1])


def _override_text(value: Any) -> str:
    """A Python value as the text a ``--set`` override takes (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise CtframeError(f"override value {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, Path | str):
        return json.dumps(str(value))
    if isinstance(value, Sequence):
        return "[" + ", ".join(_override_text(item) for item in value) + "]"
    raise CtframeError(f"override value {value!r}: use a number, a string, a bool or a list of them")


def run(
    recipe: Path | str | Recipe,
    *,
    output: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    **keyword_overrides: Any,
) -> Run:
    """Train and evaluate ``recipe`` (a file, or a :class:`Recipe`) in a new run directory. Overrides
    as ``overrides={"trainer.initial.epochs": 2}`` or as keywords with ``__`` for the dots
    (``trainer__initial__epochs=2``); ``output`` is the folder for the run directory."""
    changes = {**{k.replace("__", "."): v for k, v in keyword_overrides.items()}, **dict(overrides or {})}
    if isinstance(recipe, Recipe):
        if changes:
            raise CtframeError("overrides apply to a recipe file; pass its path, or a recipe already changed")
        loaded = recipe
    else:
        loaded = load_recipe(
            Path(recipe), [f"{key}={_override_text(value)}" for key, value in changes.items()]
        )
    result = start_run(loaded, output=Path(output) if output is not None else None)
    path = result.run_dir.path
    metrics = json.loads(METRICS.path(path).read_text(encoding="utf-8"))
    models = {model.stem: model for model in models_of_run(path)}
    return Run(path, metrics, models, REPORT.path(path))
