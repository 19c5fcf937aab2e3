"""Which images the pooling picked: per validation group, the images with the largest pooling weight
(``mil_top_images`` in the run directory). Ids are the dataset's sample ids, never file paths."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ctframe import write_text
from ctframe_mil.bags import Bags
from ctframe_mil.loop import BagEvaluation
from ctframe_mil.options import MilOptions
from ctframe_mil.pooling import pooling_weights

COLUMNS = ("group", "true_class", "group_probability", "rank", "sample_id", "probability", "weight")


def top_image_rows(
    bags: Bags, evaluation: BagEvaluation, options: MilOptions, class_names: tuple[str, str], positive: int
) -> list[tuple[object, ...]]:
    """Per bag, up to ``options.top_images`` images by pooling weight (weight 0, left out by ``max`` and
    ``topk_mean``, is never listed), the largest first."""
    rows: list[tuple[object, ...]] = []
    for b, name in enumerate(bags.groups):
        members = bags.members[b].cpu().numpy()
        probabilities = evaluation.image_probabilities[members]
        weights = pooling_weights(probabilities, options.pooling, options.k, options.temperature)
        order = np.lexsort((-probabilities, -weights))  # by weight, then probability, both descending
        true_class = class_names[positive] if bags.labels[b] > 0.5 else class_names[1 - positive]
        for rank, i in enumerate([i for i in order if weights[i] > 0][: options.top_images], start=1):
            rows.append(
                (
                    name,
                    true_class,
                    f"{evaluation.bag_probabilities[b]:.6f}",
                    rank,
                    bags.sample_ids[members[i]],
                    f"{probabilities[i]:.6f}",
                    f"{weights[i]:.6f}",
                )
            )
    return rows


def write_top_images(path: Path, rows: list[tuple[object, ...]]) -> Path:
    """The rows as CSV, written atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return write_text(path, text.getvalue())


def plural(unit: str) -> str:
    """``patient`` -> ``patients``, ``study`` -> ``studies``, ``series`` stays."""
    if unit.endswith("s"):
        return unit
    return unit[:-1] + "ies" if unit.endswith("y") else unit + "s"


def top_image_summary(bags: Bags, evaluation: BagEvaluation, unit: str) -> str:
    """One line: how strongly the top image of positive and of negative validation groups scores."""
    tops = np.array([evaluation.image_probabilities[m.cpu().numpy()].max() for m in bags.members])
    positive = bags.labels.cpu().numpy() > 0.5
    parts = [
        f"{label} {plural(unit)} {tops[mask].mean():.3f}"
        for label, mask in (("positive", positive), ("negative", ~positive))
        if mask.any()
    ]
    return "mean top-image probability of validation " + ", ".join(parts)
