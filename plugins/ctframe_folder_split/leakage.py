"""Leakage check: does the test set hold near-copies of training images?

For each test image, find its most similar training image (correlation of the thumbnails from
:func:`ctframe_folder_split.sequence.thumbnail`) and count the test images whose best match is above a
near-duplicate level. A random image-level split of sliced CT data puts neighbouring slices of one patient
on both sides and lights this up; a split that keeps each scan sequence on one side keeps it quiet.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_LEVEL = 0.95
"""Correlation at or above which a test image counts as a near-duplicate of a training image. On the
real sample no pair of distinct files reaches it (unrelated files peak at 0.92, consecutive slices at
0.94) while copies score 1.0; on generated series most neighbouring slices exceed it. Not validated on
the full release: read the report's ``profile`` too (``docs/grouping.md``)."""

DEFAULT_TOLERANCE = 0.02
"""Largest share of test images above the level (beyond the chance share, when known) that still counts
as quiet: room for the odd look-alike, while one duplicated file in a 36-image test set (2.8%) is loud."""

PROFILE_LEVELS = (0.80, 0.85, 0.90, 0.95, 0.98)
"""Levels at which every report also gives the shares, so a reader can judge the chosen level."""

DEFAULT_BATCH = 1024
"""Query rows per block: a block is ``batch x len(reference)`` float32, 10 MiB for 2,500 references."""


def nearest_neighbours(
    query: np.ndarray, reference: np.ndarray, batch: int = DEFAULT_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """The most similar reference row for every query row, by dot product.

    ``query`` is ``(n, d)``, ``reference`` is ``(m, d)`` with ``m >= 1``; with unit-norm centred rows
    (thumbnails) the dot product is the correlation. Works through ``batch`` query rows at a time, so
    memory stays at ``batch * m`` floats. Ties go to the lowest reference index.

    Returns ``(index, similarity)``: int64 and float32 arrays of length ``n``.
    """
    query = np.asarray(query, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"need (n, d) and (m, d) arrays, got {query.shape} and {reference.shape}")
    if reference.shape[0] == 0:
        raise ValueError("nearest_neighbours needs at least one reference vector")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    index = np.empty(query.shape[0], dtype=np.int64)
    similarity = np.empty(query.shape[0], dtype=np.float32)
    for start in range(0, query.shape[0], batch):
        block = query[start : start + batch] @ reference.T
        best = block.argmax(axis=1)
        index[start : start + batch] = best
        similarity[start : start + batch] = block[np.arange(block.shape[0]), best]
    return index, similarity


@dataclass(frozen=True)
class LeakageReport:
    """Result of :func:`leakage_check`; ``to_dict()`` is JSON-ready."""

    level: float
    """Near-duplicate level the similarities were compared with."""
    tolerance: float
    """Largest share above the level (beyond chance) that still counts as quiet."""
    n_test: int
    count_above: int
    """Test images whose most similar training image (of the same class, when classes were given) is at
    or above ``level``."""
    share_above: float
    """``count_above / n_test`` (0 when there are no test images)."""
    chance_share: float | None
    """Share of test images whose most similar training image of ANOTHER class is at or above ``level``:
    look-alikes that cannot be the same patient, an estimate of how often chance alone reaches the level.
    None when no classes were given."""
    median_nearest: float | None
    """Median over test images of the similarity to their nearest (same-class) training image."""
    worst_pairs: tuple[tuple[str, str, float], ...]
    """``(test_id, train_id, similarity)`` of the most similar pairs, most similar first."""
    profile: tuple[tuple[float, float, float | None], ...] = ()
    """``(level, share_above, chance_share)`` at each of :data:`PROFILE_LEVELS`."""

    @property
    def loud(self) -> bool:
        """True when the share of test images with a near-duplicate in training, less the chance share
        (when known), exceeds ``tolerance``."""
        return self.share_above - (self.chance_share or 0.0) > self.tolerance

    def summary(self) -> str:
        """One line for logs and reports."""
        verdict = "LEAKAGE" if self.loud else "quiet"
        text = (
            f"leakage check {verdict}: {self.count_above} of {self.n_test} test images "
            f"({self.share_above:.1%}) have a training image with similarity >= {self.level:.2f}"
        )
        if self.chance_share is not None:
            text += f" (other classes, i.e. chance: {self.chance_share:.1%})"
        if self.worst_pairs:
            test_id, train_id, value = self.worst_pairs[0]
            text += f"; closest pair {test_id} ~ {train_id} ({value:.3f})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "tolerance": self.tolerance,
            "n_test": self.n_test,
            "count_above": self.count_above,
            "share_above": self.share_above,
            "chance_share": self.chance_share,
            "median_nearest": self.median_nearest,
            "loud": self.loud,
            "profile": [
                {"level": level, "share_above": share, "chance_share": chance}
                for level, share, chance in self.profile
            ],
            "worst_pairs": [
                {"test": test_id, "train": train_id, "similarity": value}
                for test_id, train_id, value in self.worst_pairs
            ],
        }


# Nine parameters: both sides' vectors, ids and classes, and three knobs; callers name all but the first four
def leakage_check(
    test_vectors: np.ndarray,
    train_vectors: np.ndarray,
    test_ids: Sequence[str],
    train_ids: Sequence[str],
    *,
    level: float = DEFAULT_LEVEL,
    worst: int = 10,
    tolerance: float = DEFAULT_TOLERANCE,
    test_classes: Sequence[Hashable] | None = None,
    train_classes: Sequence[Hashable] | None = None,
) -> LeakageReport:
    """Compare every test image with its most similar training image.

    Vectors are thumbnail vectors (rows matching ``test_ids`` / ``train_ids``). Pass as "training" every
    image that shapes the model or its selection (train and validation parts), since a near-copy in
    either inflates the test score. ``worst`` bounds the number of pairs listed.

    With ``test_classes`` and ``train_classes`` (labels per row, both or neither), a test image is only
    compared with training images of its own class, and the same search among the other classes gives
    ``chance_share``: in data where every patient belongs to one class (the SARS-CoV-2 CT set), such
    matches are look-alikes, never leaks, so the verdict then discounts what chance alone produces.
    """
    test_vectors = np.asarray(test_vectors, dtype=np.float32)
    train_vectors = np.asarray(train_vectors, dtype=np.float32)
    _check_rows(test_vectors, train_vectors, test_ids, train_ids, test_classes, train_classes)
    n_test = len(test_ids)
    chance_share = None if test_classes is None else 0.0
    if n_test == 0 or len(train_ids) == 0:
        return LeakageReport(level, tolerance, n_test, 0, 0.0, chance_share, None, ())

    chance = None
    if test_classes is None:
        index, similarity = nearest_neighbours(test_vectors, train_vectors)
    else:
        index, similarity, chance = _nearest_by_class(
            test_vectors, train_vectors, test_classes, train_classes
        )
        chance_share = float((chance >= level).sum()) / n_test
    found = index >= 0  # -inf similarity where a test class has no training image
    similarity = np.minimum(similarity, 1.0)  # unit vectors may overshoot by a rounding error
    count_above = int((similarity >= level).sum())
    # Stable sort on the negated values: equal similarities keep test order, so the list is repeatable.
    ranked = [i for i in np.argsort(-similarity, kind="stable") if found[i]][: max(worst, 0)]
    worst_pairs = tuple(
        (str(test_ids[i]), str(train_ids[index[i]]), round(float(similarity[i]), 6)) for i in ranked
    )
    return LeakageReport(
        level=level,
        tolerance=tolerance,
        n_test=n_test,
        count_above=count_above,
        share_above=count_above / n_test,
        chance_share=chance_share,
        median_nearest=round(float(np.median(similarity[found])), 6) if found.any() else None,
        worst_pairs=worst_pairs,
        profile=_profile(similarity, chance),
    )


def _check_rows(
    test_vectors: np.ndarray,
    train_vectors: np.ndarray,
    test_ids: Sequence[str],
    train_ids: Sequence[str],
    test_classes: Sequence[Hashable] | None,
    train_classes: Sequence[Hashable] | None,
) -> None:
    """One id (and, when given, one class label) per vector on each side."""
    if len(test_ids) != len(test_vectors) or len(train_ids) != len(train_vectors):
        raise ValueError(
            f"ids and vectors differ in length: {len(test_ids)} test ids for {len(test_vectors)} vectors, "
            f"{len(train_ids)} train ids for {len(train_vectors)} vectors"
        )
    if (test_classes is None) != (train_classes is None):
        raise ValueError("give both test_classes and train_classes, or neither")
    if test_classes is not None and (
        len(test_classes) != len(test_ids) or len(train_classes) != len(train_ids)
    ):
        raise ValueError("need one class label per test and per training id")


def _profile(
    similarity: np.ndarray, chance: np.ndarray | None
) -> tuple[tuple[float, float, float | None], ...]:
    """``(level, share_above, chance_share)`` at each of :data:`PROFILE_LEVELS`."""
    n_test = len(similarity)
    return tuple(
        (
            at,
            round(float((similarity >= at).sum()) / n_test, 6),
            None if chance is None else round(float((chance >= at).sum()) / n_test, 6),
        )
        for at in PROFILE_LEVELS
    )


def _nearest_by_class(
    test_vectors: np.ndarray,
    train_vectors: np.ndarray,
    test_classes: Sequence[Hashable],
    train_classes: Sequence[Hashable],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest same-class training image (index -1 and similarity -inf when a class has none in
    training) and the similarity of the nearest other-class one (-inf when there is none)."""
    test_labels = np.asarray([str(c) for c in test_classes])
    train_labels = np.asarray([str(c) for c in train_classes])
    index = np.full(len(test_labels), -1, dtype=np.int64)
    similarity = np.full(len(test_labels), -np.inf, dtype=np.float32)
    chance = np.full(len(test_labels), -np.inf, dtype=np.float32)
    for label in np.unique(test_labels):
        rows = np.flatnonzero(test_labels == label)
        for same, into in ((True, None), (False, chance)):
            columns = np.flatnonzero((train_labels == label) == same)
            if columns.size == 0:
                continue
            best, value = nearest_neighbours(test_vectors[rows], train_vectors[columns])
            if into is None:
                index[rows] = columns[best]
                similarity[rows] = value
            else:
                into[rows] = value
    return index, similarity, chance
