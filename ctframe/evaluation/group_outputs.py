"""The group-level predictions file, ``predictions_<key>_<unit>.csv``: one row per group (patient, series)
beside the image file, with the aggregated probabilities, the decision at the group threshold and the
images that drove it (docs/metrics.md, "Predictions files")."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctframe.base.filenames import ensure_escaped
from ctframe.base.training import Predictions
from ctframe.evaluation.aggregate import Aggregation, GroupedPredictions, group_predictions
from ctframe.evaluation.decision import predicted_labels
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.storage.files import atomic_open

TOP_SAMPLES = 3
"""How many of a group's images the file names: those with the highest positive-class probability."""
SEPARATOR = ";"
"""Between the ids of ``top_samples`` (and their ``top_probabilities``); an id's own ``;`` is ``\\x3b``."""
GROUP_FILE_COLUMNS = ("group", "unit", "images")
"""The columns that tell a group-level predictions file from an image-level one."""


@dataclass(frozen=True)
class GroupAnswers:
    """One model's answer per group, ready to write: the groups, their decision and their top images."""

    grouped: GroupedPredictions
    predicted: np.ndarray
    threshold: float | None
    aggregation: Aggregation
    unit: str
    top: Sequence[tuple[Sequence[str], Sequence[float]]]
    """Per group (in ``grouped`` order): the ids of its top images and their positive probabilities."""


def top_samples(
    images: Predictions, groups: np.ndarray, ids: np.ndarray, positive_index: int, count: int = TOP_SAMPLES
) -> list[tuple[list[str], list[float]]]:
    """For each group of ``ids`` (sorted, as :func:`aggregate` returns them): up to ``count`` sample ids
    with the highest positive-class probability, highest first (ties by sample id), and those values."""
    keys = np.asarray([str(group) for group in groups])
    inverse = np.searchsorted(ids, keys)
    scores = np.asarray(images.probabilities, dtype=np.float64)[:, positive_index]
    names = np.asarray(images.sample_ids, dtype=object)
    order = np.lexsort((names.astype(str), -scores, inverse))  # by group, then score down, then id
    found: list[tuple[list[str], list[float]]] = [([], []) for _ in ids]
    for row in order:
        chosen, values = found[inverse[row]]
        if len(chosen) < count:
            chosen.append(str(names[row]))
            values.append(float(scores[row]))
    return found


def answer_groups(
    images: Predictions,
    groups: np.ndarray,
    positive_index: int,
    how: Aggregation,
    threshold: float | None,
    unit: str,
) -> GroupAnswers:
    """``images`` aggregated per group (``groups[i]`` is image ``i``'s) and decided at ``threshold``
    (``None``: the most probable class)."""
    grouped = group_predictions(images, groups, positive_index, how)
    probabilities = grouped.predictions.probabilities
    predicted = predicted_labels(probabilities, positive_index, 0.5 if threshold is None else threshold)
    ids = np.asarray(grouped.predictions.sample_ids)
    top = top_samples(images, groups, ids, positive_index)
    return GroupAnswers(grouped, predicted, threshold, how, unit, top)


def describe_aggregation(how: Aggregation) -> str:
    """``mean``, ``topk_mean(k=5)``, ``quantile(q=0.9)``: the rule in one cell."""
    if how.method == "topk_mean":
        return f"topk_mean(k={how.k})"
    if how.method == "quantile":
        return f"quantile(q={how.quantile:g})"
    return how.method


def group_header(class_names: Sequence[str], labelled: bool) -> list[str]:
    truth = ["true_class"] if labelled else []
    classes = [PROBABILITY_PREFIX + name for name in class_names]
    fixed = ["predicted_class", "positive_class", "threshold", "aggregate"]
    return [*GROUP_FILE_COLUMNS, *truth, *fixed, *classes, "top_samples", "top_probabilities"]


def _shown_id(sample_id: str) -> str:
    return ensure_escaped(sample_id).replace(SEPARATOR, "\\x3b")


def write_group_predictions_csv(
    path: Path, answers: GroupAnswers, class_names: Sequence[str], positive_class: str, labelled: bool
) -> Path:
    """One row per group: id, unit, number of images, (true class,) decision, positive class, threshold,
    aggregation, one probability column per class, and the top images with their probabilities."""
    grouped = answers.grouped.predictions
    shown_threshold = "" if answers.threshold is None else f"{answers.threshold:.8g}"
    rule = describe_aggregation(answers.aggregation)
    with atomic_open(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(group_header(class_names, labelled))
        for row, group in enumerate(grouped.sample_ids):
            truth = [class_names[int(grouped.labels[row])]] if labelled else []
            chosen, values = answers.top[row]
            record = [ensure_escaped(group), answers.unit, int(answers.grouped.counts[row]), *truth]
            record += [class_names[int(answers.predicted[row])], positive_class, shown_threshold, rule]
            record += [f"{p:.8g}" for p in grouped.probabilities[row]]
            record += [SEPARATOR.join(map(_shown_id, chosen)), SEPARATOR.join(f"{v:.8g}" for v in values)]
            writer.writerow(record)
    return Path(path)
