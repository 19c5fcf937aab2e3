"""Cluster (group) bootstrap: whole groups are resampled within each class."""

from __future__ import annotations

import numpy as np
import pytest

from ctframe.evaluation.bootstrap import (
    CHUNK,
    group_resample_weights,
    percentile_interval,
    resample_weights,
    sample_groups,
    stratified_group_counts,
)


def _accuracy(weights: np.ndarray, correct: np.ndarray) -> np.ndarray:
    return (weights * correct).sum(axis=1) / weights.sum(axis=1)


def _width(weights_blocks, correct: np.ndarray) -> float:
    samples = np.concatenate([_accuracy(block, correct) for block in weights_blocks])
    low, high = percentile_interval(samples, 0.95)
    return high - low


def _duplicated(seed: int, groups_per_class: int = 40, copies: int = 8):
    """Each group is one independent case repeated ``copies`` times (the same prediction for every
    copy), as slices of one patient that a model gets all right or all wrong."""
    rng = np.random.default_rng(seed)
    labels, groups, correct = [], [], []
    for label in (0, 1):
        for g in range(groups_per_class):
            right = rng.random() < 0.8
            labels += [label] * copies
            groups += [f"{label}-{g}"] * copies
            correct += [right] * copies
    return np.array(labels), np.array(groups), np.array(correct, dtype=float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_bootstrap_is_wider_than_image_bootstrap_on_duplicated_groups(seed):
    labels, groups, correct = _duplicated(seed)
    image = _width(resample_weights(labels, 2000, seed), correct)
    grouped = _width(group_resample_weights(labels, groups, 2000, seed), correct)
    # Eight copies carry the information of one case: about sqrt(8) = 2.8 times wider.
    assert grouped > 2 * image
    # And as wide as the image bootstrap of the deduplicated data, which is what the data really holds.
    first = np.unique(groups, return_index=True)[1]
    deduplicated = _width(resample_weights(labels[first], 2000, seed), correct[first])
    assert 0.8 < grouped / deduplicated < 1.25


def test_one_sample_per_group_is_exactly_the_image_bootstrap():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 57)
    groups = [f"g{k}" for k in range(57)]
    for image, grouped in zip(
        resample_weights(labels, 600, 9), group_resample_weights(labels, groups, 600, 9), strict=True
    ):
        assert np.array_equal(image, grouped)


def test_whole_groups_are_drawn_and_class_group_counts_kept():
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 1, 0, 1])
    groups = np.array(["a", "a", "b", "c", "c", "d", "e", "e", "b", "f"])
    counts = stratified_group_counts(labels, groups, 500, np.random.default_rng(0))
    assert counts.shape == (500, 10) and counts.dtype == np.int64
    for group in np.unique(groups):
        members = counts[:, groups == group]
        assert (members == members[:, :1]).all()  # every member of a group drawn equally often
    # Class 0 has 3 groups (a, b, d), class 1 has 3 (c, e, f): each resample draws 3 of each.
    drawn_0 = counts[:, 0] + counts[:, 2] + counts[:, 5]
    drawn_1 = counts[:, 3] + counts[:, 6] + counts[:, 9]
    assert (drawn_0 == 3).all() and (drawn_1 == 3).all()


def test_a_group_in_two_classes_is_one_unit_per_class():
    labels = np.array([0, 1, 0, 1])
    groups = np.array(["p", "p", "q", "r"])
    counts = stratified_group_counts(labels, groups, 300, np.random.default_rng(1))
    assert ((counts[:, 0] + counts[:, 2]) == 2).all() and ((counts[:, 1] + counts[:, 3]) == 2).all()
    assert not np.array_equal(counts[:, 0], counts[:, 1])  # drawn independently in each class


def test_blocks_are_reproducible_and_cover_every_resample():
    labels, groups, _ = _duplicated(0, groups_per_class=5, copies=3)
    blocks = list(group_resample_weights(labels, groups, CHUNK + 17, 4))
    assert [b.shape for b in blocks] == [(CHUNK, 30), (17, 30)] and blocks[0].dtype == np.float64
    again = list(group_resample_weights(labels, list(groups), CHUNK + 17, 4))
    assert all(np.array_equal(a, b) for a, b in zip(blocks, again, strict=True))


def test_groups_must_match_the_samples():
    with pytest.raises(ValueError, match="one group per sample: 2 groups for 3 labels"):
        next(group_resample_weights(np.array([0, 1, 1]), ["a", "b"], 10, 0))
    assert sample_groups(["x", "y"], {}) is None
    assert sample_groups(["x", "y"], {"x": "p1", "y": "p1"}).tolist() == ["p1", "p1"]
    with pytest.raises(ValueError, match="1 sample.*no group.*: y"):
        sample_groups(["x", "y"], {"x": "p1"})
