"""``ctframe predict``: class probabilities for new image files with a trained model, as a CSV."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctframe.base.errors import DataError
from ctframe.base.training import Predictions
from ctframe.evaluation.conformal import ConformalRule
from ctframe.evaluation.decision import predicted_labels
from ctframe.evaluation.given_groups import groups_from_csv
from ctframe.evaluation.group_outputs import answer_groups, write_group_predictions_csv
from ctframe.evaluation.group_rule import rule_of
from ctframe.evaluation.outputs import write_predictions_csv
from ctframe.evaluation.results import EvaluationData
from ctframe.registry.plugins import Registry, get_registry
from ctframe.registry.settings import PREDICTION_BATCH
from ctframe.runtime.inference import predict_with_progress, read_files
from ctframe.runtime.loading import load_model
from ctframe.runtime.predict import PredictSettings
from ctframe.storage.layout import unit_in_names
from ctframe.storage.modelfile import ModelFileError, ModelInfo, find_model
from ctframe.storage.outputs import claim_file

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
    group_output: Path | None = None
    """The per-group CSV, when the files' groups are known (the reader's, or ``--groups``)."""
    groups: int = 0
    unit: str = "group"
    ignored: dict[str, int] = field(default_factory=dict)
    """Files the model's reader does not read (not images for an image model), by ending."""

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
    batch_size: int = PREDICTION_BATCH,
    precision: str = "fp32",
    device: str = "cpu",
    groups: Path | None = None,
    force: bool = False,
    registry: Registry | None = None,
    console: Console | None = None,
) -> PredictRun:
    """Predict every image file under ``paths`` into the CSV ``output``; when their groups are known
    (the reader's, or the ``groups`` CSV, which wins) also one row per group into ``<output>_<unit>.csv``,
    by the model's own group rule. An existing output is replaced only with ``force``
    (:mod:`ctframe.storage.outputs`)."""
    registry = registry or get_registry()
    started = time.perf_counter()
    model_file = find_model(model_or_run, model_key)
    inputs = [model_file, model_file.with_suffix(".safetensors"), *paths, *([groups] if groups else [])]
    output = claim_file(output, force=force, inputs=inputs)
    loaded = load_model(model_file, registry, device=device)
    loaded_at = time.perf_counter()
    info = loaded.info
    read = read_files(info, paths, on_bad_image, registry)
    if len(read.images) == 0:
        why = " (all were skipped)" if read.skipped else ""
        raise ModelFileError(f"no image files to predict on{why}{left_out_text(read.ignored, '; ')}")
    sample_groups, unit = read.groups, read.group_unit
    if groups is not None:  # before predicting: a CSV that does not fit is one line, not a wasted pass
        sample_groups, unit = groups_from_csv(groups, read.files)
    if sample_groups:
        claim_file(group_output_path(output, unit), force=force, inputs=inputs)
    settings = PredictSettings(device, precision, batch_size, read.num_workers)
    skipped = list(read.skipped)  # and those that only decoding finds unreadable, with skip
    late = skipped if on_bad_image == "skip" else None
    predictions = predict_with_progress(loaded, read.images, settings, console, f"predict ({info.key})", late)
    if len(predictions.sample_ids) == 0:
        raise ModelFileError("no image files to predict on (all were skipped)")
    threshold = info.threshold
    decision = 0.5 if threshold is None else threshold
    predicted = (
        predicted_labels(predictions.probabilities, info.positive_index, decision)
        if len(info.class_names) == 2
        else np.argmax(predictions.probabilities, axis=1)
    )
    data = EvaluationData(info.class_names, info.positive_class, read.files, dict(sample_groups), unit)
    # probabilities come recalibrated (predict_with_progress); the stored conformal rule gives the sets
    stored_rule = info.conformal
    rule = None if stored_rule is None else ConformalRule.from_record(stored_rule, info.class_names)
    sets = None if rule is None else rule.labels(predictions.probabilities)
    write_predictions_csv(output, predictions, predicted, data, threshold, labelled=False, sets=sets)
    group_output, answered = None, 0
    if sample_groups:
        group_output, answered = _write_groups(info, predictions, data, output)
    finished = time.perf_counter()
    count = len(predictions.sample_ids)
    timing = (loaded_at - started, finished - loaded_at)
    return PredictRun(output, count, skipped, *timing, group_output, answered, unit, dict(read.ignored))


def left_out_text(ignored: Mapping[str, int], lead: str = "") -> str:
    """ "left out 12 files this model does not read (.dcm 12)", with a hint for DICOM; "" for none."""
    if not ignored:
        return ""
    endings = ", ".join(f"{ending} {count}" for ending, count in ignored.items())
    said = f"{lead}left out {sum(ignored.values())} file(s) this model does not read ({endings})"
    if ".dcm" in ignored:
        said += ": DICOM is read by models trained on a CT-volume dataset (ct_volumes)"
    return said


def group_output_path(output: Path, unit: str) -> Path:
    """``preds.csv`` -> ``preds_patient.csv``: the per-group file beside the image file."""
    return output.with_name(f"{output.stem}_{unit_in_names(unit)}{output.suffix or '.csv'}")


def _write_groups(
    info: ModelInfo, predictions: Predictions, data: EvaluationData, output: Path
) -> tuple[Path, int]:
    rule = rule_of(info)
    try:
        groups = np.asarray([data.groups[sample] for sample in predictions.sample_ids])
    except KeyError as missing:
        raise DataError(f"the reader gave no group for {missing}; pass --groups CSV") from None
    answers = answer_groups(
        predictions, groups, info.positive_index, rule.aggregation, rule.threshold.value, data.group_unit
    )
    path = group_output_path(output, data.group_unit)
    write_group_predictions_csv(path, answers, info.class_names, info.positive_class, labelled=False)
    return path, len(answers.grouped.counts)
