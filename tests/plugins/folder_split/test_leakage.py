"""Leakage check: loud on an image-level split of generated scan series, quiet on a grouped split."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from ctframe_folder_split.leakage import DEFAULT_LEVEL, leakage_check, nearest_neighbours
from ctframe_folder_split.sequence import group_sequences, thumbnail
from sklearn.model_selection import train_test_split

# The series generator lives with the grouping tests; load it by path so this works in any import mode.
_spec = importlib.util.spec_from_file_location(
    "sequence_series_generator", Path(__file__).with_name("test_sequence_grouping.py")
)
series = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(series)


@cache
def _dataset(seed: int, runs_per_class: int = 14):
    """Two classes of generated series: ids, class per file, vectors, sequence group per file."""
    rng = np.random.default_rng(seed)
    ids, classes, vectors, groups = [], [], [], []
    for label in ("COVID", "non-COVID"):
        images, _ = series.make_series(rng, runs_per_class)
        names = [f"{label}/{label} ({k + 1}).png" for k in range(len(images))]
        class_vectors = np.stack([thumbnail(image) for image in images])
        class_groups = group_sequences(names, class_vectors)
        ids += names
        classes += [label] * len(names)
        vectors.append(class_vectors)
        groups += [f"{label}:{group}" for group in class_groups]
    return np.array(ids), np.array(classes), np.concatenate(vectors), np.array(groups)


def _grouped_split(classes: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A tiny stratified group split: per class, whole groups go to test until it holds its share."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(classes), dtype=bool)
    for label in np.unique(classes):
        in_class = classes == label
        target = test_fraction * in_class.sum()
        for group in rng.permutation(np.unique(groups[in_class])):
            if is_test[in_class].sum() >= target:
                break
            is_test |= groups == group
    return is_test


def _check(ids, classes, vectors, is_test, with_classes: bool):
    test, train = is_test, ~is_test
    extra = {"test_classes": classes[test], "train_classes": classes[train]} if with_classes else {}
    return leakage_check(vectors[test], vectors[train], ids[test], ids[train], **extra)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_classes", [False, True])
def test_loud_on_image_level_split_quiet_on_grouped_split(seed, with_classes):
    ids, classes, vectors, groups = _dataset(seed)

    random_test = np.zeros(len(ids), dtype=bool)
    _, test_index = train_test_split(np.arange(len(ids)), test_size=0.3, stratify=classes, random_state=seed)
    random_test[test_index] = True
    grouped_test = _grouped_split(classes, groups, 0.3, seed)

    # The grouped split keeps every group on one side; the image-level split does not.
    assert not set(groups[grouped_test]) & set(groups[~grouped_test])
    assert set(groups[random_test]) & set(groups[~random_test])
    assert 0.25 < grouped_test.mean() < 0.45

    leaky = _check(ids, classes, vectors, random_test, with_classes)
    assert leaky.loud and leaky.share_above > 0.5
    assert leaky.worst_pairs[0][2] >= DEFAULT_LEVEL
    # The worst pairs are neighbouring slices of one series that the random split separated.
    test_id, train_id, _ = leaky.worst_pairs[0]
    position = {name: k for k, name in enumerate(ids)}
    assert groups[position[test_id]] == groups[position[train_id]]

    clean = _check(ids, classes, vectors, grouped_test, with_classes)
    assert not clean.loud and clean.count_above == 0
    assert clean.median_nearest < leaky.median_nearest
    assert "quiet" in clean.summary() and "LEAKAGE" in leaky.summary()


def test_look_alikes_in_another_class_count_as_chance_not_leakage():
    rng = np.random.default_rng(11)
    run = series.make_run(rng, 6)
    # Class B holds near-copies of class A's series (a slight brightness change): look-alikes across
    # classes, which in one-patient-one-class data cannot be the same patient.
    twin = [np.clip(image.astype(np.int16) + 6, 0, 255).astype(np.uint8) for image in run]
    other = series.make_run(rng, 6)
    test_vectors = np.stack([thumbnail(image) for image in run])
    train_vectors = np.stack([thumbnail(image) for image in twin + other])
    test_ids = [f"A ({k})" for k in range(6)]
    train_ids = [f"B ({k})" for k in range(6)] + [f"A ({k})" for k in range(10, 16)]
    test_classes, train_classes = ["A"] * 6, ["B"] * 6 + ["A"] * 6

    blind = leakage_check(test_vectors, train_vectors, test_ids, train_ids)
    assert blind.loud and blind.chance_share is None and blind.share_above == 1.0

    aware = leakage_check(test_vectors, train_vectors, test_ids, train_ids,
                          test_classes=test_classes, train_classes=train_classes)
    assert not aware.loud and aware.chance_share == 1.0 and aware.count_above == 0
    assert all(train_id.startswith("A") for _, train_id, _ in aware.worst_pairs)
    assert "chance" in aware.summary()


def test_report_is_json_ready_and_lists_the_worst_pairs_first():
    rng = np.random.default_rng(12)
    vectors = rng.normal(size=(40, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    test, train = vectors[:10], np.concatenate([vectors[10:], vectors[:3] * 0.999])
    test_ids = [f"t{k}" for k in range(10)]
    train_ids = [f"r{k}" for k in range(len(train))]
    report = leakage_check(test, train, test_ids, train_ids, worst=4)
    assert report.count_above == 3 and report.n_test == 10 and report.share_above == pytest.approx(0.3)
    assert [pair[0] for pair in report.worst_pairs[:3]] == ["t0", "t1", "t2"]
    assert [pair[1] for pair in report.worst_pairs[:3]] == ["r30", "r31", "r32"]
    values = [pair[2] for pair in report.worst_pairs]
    assert len(values) == 4 and values == sorted(values, reverse=True)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["loud"] is True and data["worst_pairs"][0]["test"] == "t0"
    assert "\n" not in report.summary() and "3 of 10" in report.summary()
    assert leakage_check(test, train, test_ids, train_ids, worst=0).worst_pairs == ()


def test_empty_sides_and_classes_missing_from_training():
    vectors = np.eye(4, dtype=np.float32)
    empty = leakage_check(vectors[:0], vectors, [], list("abcd"))
    assert empty.n_test == 0 and not empty.loud and empty.median_nearest is None
    json.dumps(empty.to_dict())
    no_train = leakage_check(vectors, vectors[:0], list("abcd"), [])
    assert no_train.n_test == 4 and no_train.count_above == 0 and not no_train.loud
    # A test class with no training image has no same-class neighbour: nothing to leak, no crash.
    report = leakage_check(vectors[:2], vectors[2:], ["x", "y"], ["p", "q"],
                           test_classes=["new", "A"], train_classes=["A", "A"])
    assert report.n_test == 2 and report.count_above == 0 and len(report.worst_pairs) == 1


def test_bad_arguments_are_rejected():
    vectors = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="differ in length"):
        leakage_check(vectors, vectors, ["a"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="both"):
        leakage_check(vectors, vectors, list("abc"), list("abc"), test_classes=list("xxx"))
    with pytest.raises(ValueError, match="at least one reference"):
        nearest_neighbours(vectors, vectors[:0])
    with pytest.raises(ValueError):
        nearest_neighbours(vectors, np.eye(4, dtype=np.float32))


@pytest.mark.parametrize("batch", [1, 7, 1024])
def test_nearest_neighbours_match_the_full_matrix(batch):
    rng = np.random.default_rng(13)
    query = rng.normal(size=(300, 48)).astype(np.float32)
    reference = rng.normal(size=(250, 48)).astype(np.float32)
    full = query @ reference.T
    index, similarity = nearest_neighbours(query, reference, batch=batch)
    np.testing.assert_array_equal(index, full.argmax(axis=1))
    np.testing.assert_allclose(similarity, full.max(axis=1), rtol=1e-5)
    assert index.dtype == np.int64 and similarity.dtype == np.float32


def test_ties_go_to_the_lowest_reference_index():
    reference = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    index, similarity = nearest_neighbours(np.array([[1.0, 0.0]], dtype=np.float32), reference, batch=1)
    assert index.tolist() == [1] and similarity.tolist() == [1.0]


def test_profile_gives_shares_at_several_levels():
    ids, classes, vectors, groups = _dataset(0)
    is_test = _grouped_split(classes, groups, 0.3, 0)
    report = _check(ids, classes, vectors, is_test, with_classes=True)
    levels = [level for level, _, _ in report.profile]
    shares = [share for _, share, _ in report.profile]
    assert levels == sorted(levels) and shares == sorted(shares, reverse=True)
    assert all(chance is not None for _, _, chance in report.profile)
    assert json.loads(json.dumps(report.to_dict()))["profile"][0]["level"] == levels[0]


# --- quiet by construction: groups that close every near-copy ------------------------------------


@cache
def _planted(seed: int, runs_per_class: int = 12, copies: int = 6):
    """Two classes of series with near-copies planted after the last file (far from their originals):
    ids, classes, vectors, sequence-only groups and linked groups (runs + near-copies at the level)."""
    from ctframe_folder_split.sequence import group_linked

    rng = np.random.default_rng(seed)
    ids, classes, vectors, runs, linked = [], [], [], [], []
    for label in ("COVID", "non-COVID"):
        images, run_of = series.make_series(rng, runs_per_class)
        images, run_of, _ = series.plant_copies(rng, images, run_of, copies)
        names = [f"{label}/{label} ({k + 1}).png" for k in range(len(images))]
        class_vectors = np.stack([thumbnail(image) for image in images])
        ids += names
        classes += [label] * len(names)
        vectors.append(class_vectors)
        runs += [f"{label}:{g}" for g in group_sequences(names, class_vectors)]
        groups = group_linked(names, class_vectors, level=DEFAULT_LEVEL).groups
        linked += [f"{label}:{g}" for g in groups]
    return np.array(ids), np.array(classes), np.concatenate(vectors), np.array(runs), np.array(linked)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_only_groups_leak_planted_copies_linked_groups_never_do(seed):
    ids, classes, vectors, runs, linked = _planted(seed)
    loud = 0
    for split_seed in range(10):
        # Sequence-only groups put a copy and its original on both sides of many splits.
        leaky = _check(ids, classes, vectors, _grouped_split(classes, runs, 0.3, split_seed), True)
        loud += leaky.loud
        # Linked groups: every same-class pair at the level shares a group, so no split can separate
        # one; not "quiet within tolerance" but zero test images above the level, for every split.
        clean = _check(ids, classes, vectors, _grouped_split(classes, linked, 0.3, split_seed), True)
        assert clean.count_above == 0 and not clean.loud
        assert clean.worst_pairs[0][2] < DEFAULT_LEVEL
    assert loud >= 8  # measured: all 10 splits of seeds 0-5 are loud


def test_linked_groups_are_quiet_at_any_level_on_random_vectors():
    from ctframe_folder_split.sequence import group_linked

    rng = np.random.default_rng(31)
    base = rng.normal(size=(80, 48))
    raw = np.concatenate([base, base[:40] + rng.uniform(0.02, 0.4, (40, 1)) * rng.normal(size=(40, 48))])
    raw -= raw.mean(axis=1, keepdims=True)
    vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
    ids = np.array([f"A/a ({k}).png" for k in range(len(vectors))])
    classes = np.array(["A"] * len(vectors))
    for level in (0.80, 0.90, 0.95, 0.99):
        groups = np.array(group_linked(list(ids), vectors, threshold=1.0, level=level).groups)
        for split_seed in range(5):
            is_test = _grouped_split(classes, groups, 0.3, split_seed)
            report = leakage_check(
                vectors[is_test], vectors[~is_test], ids[is_test], ids[~is_test], level=level
            )
            assert report.count_above == 0, (level, split_seed)
