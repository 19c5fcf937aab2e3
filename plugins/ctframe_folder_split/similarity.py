"""Glue between the dataset and the similarity functions of :mod:`sequence` and :mod:`leakage`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctframe import BuildContext
from ctframe_folder_split.leakage import leakage_check
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.run_files import LEAKAGE
from ctframe_folder_split.scan import Record
from ctframe_folder_split.sequence import group_linked


def sequence_group_labels(options: FolderSplitOptions, good: Sequence[Record]) -> list[str]:
    """One label per record: ``<class>/run<k>``, groups found per class (see :func:`sequence_grouping`)."""
    return sequence_grouping(options, good)[0]


def sequence_grouping(
    options: FolderSplitOptions, good: Sequence[Record]
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Labels ``<class>/run<k>`` per record and, per class, what the links did.

    Per class, consecutive files correlating at ``group_threshold`` are linked and, with
    ``link_near_copies``, so is every pair at ``leakage_threshold`` (:func:`group_linked`); the groups
    are the connected components. The statistics per class: ``runs`` (groups from consecutive links
    alone), ``near_copy_pairs``, ``runs_joined`` (run boundaries the near-copy links closed), ``groups``.
    """
    by_class: dict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(good):
        by_class[record.entry.class_name].append(position)
    labels = [""] * len(good)
    stats: dict[str, dict[str, int]] = {}
    level = options.leakage_threshold if options.link_near_copies else None
    for class_name, positions in by_class.items():
        names = [good[p].entry.sample_id.split("/", 1)[1] for p in positions]
        vectors = np.stack([good[p].thumbnail for p in positions])
        linked = group_linked(names, vectors, options.group_threshold, options.sequence_pattern, level)
        for position, group in zip(positions, linked.groups, strict=True):
            labels[position] = f"{class_name}/run{group:04d}"
        stats[class_name] = {
            "runs": linked.runs,
            "near_copy_pairs": linked.near_copy_pairs,
            "runs_joined": linked.runs_joined,
            "groups": linked.count,
        }
    return labels, stats


def leakage_summary(
    options: FolderSplitOptions,
    context: BuildContext,
    splits: Mapping[str, Sequence[str]],
    classes: Mapping[str, str],
    vectors: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Test images against everything that shapes the model (train and val); logged and written to the run."""
    test_ids = list(splits["test"])
    train_ids = list(splits["train"]) + list(splits["val"])
    width = next(iter(vectors.values())).shape[0]

    def stack(ids: list[str]) -> np.ndarray:
        return np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, width), np.float32)

    report = leakage_check(
        stack(test_ids),
        stack(train_ids),
        test_ids,
        train_ids,
        level=options.leakage_threshold,
        test_classes=[classes[i] for i in test_ids],
        train_classes=[classes[i] for i in train_ids],
    )
    (context.logger.warning if report.loud else context.logger.info)("%s", report.summary())
    result = report.to_dict()
    if context.run_dir is not None:
        context.run_dir.write_json(LEAKAGE, result)
    return result
