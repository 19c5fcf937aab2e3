"""The core's shared split (ctframe.data.splits, exported as ctframe.api.data): seeded, stratified,
group-aware, the same on every machine, and refusing data it cannot split honestly.

These tests drive the functions directly with made-up items; tests/plugins/folder_split/ checks the
same rule through a real dataset (files, listing order, manifests)."""

from __future__ import annotations

import hashlib
import inspect
from collections import Counter

import pytest

import ctframe.api.data as api_data
from ctframe import DataError
from ctframe.data import splits as core
from ctframe.data.splits import (
    SPLITS,
    Item,
    assign_all_to_test,
    assign_fold,
    assign_splits,
    build_groups,
)

CLASSES = ("a", "b")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def patients(per_class: int, slices: int = 1) -> list[Item]:
    """``per_class`` patients of each class, each with ``slices`` distinct images."""
    return [
        Item(f"{name}/p{p}-s{s}", sha(f"{name}{p}.{s}"), label, f"{name}-p{p}" if slices > 1 else None)
        for label, name in enumerate(CLASSES)
        for p in range(per_class)
        for s in range(slices)
    ]


def by_id(items: list[Item], splits: list[str]) -> dict[str, str]:
    return {item.sample_id: split for item, split in zip(items, splits, strict=True)}


SHARED = ("Item", "Group", "SPLITS", "build_groups", "assign_splits", "assign_fold", "assign_all_to_test")


def test_the_api_exports_the_core_objects_with_the_signatures_plugins_code_against():
    for name in SHARED:
        assert getattr(api_data, name) is getattr(core, name) and name in api_data.__all__
    assert SPLITS == ("train", "val", "test")
    expected = {
        build_groups: ["items", "seed"],
        assign_splits: ["items", "class_names", "test_fraction", "val_fraction", "seed"],
        assign_fold: ["items", "class_names", "fold", "folds", "val_fraction", "seed"],
        assign_all_to_test: ["items", "seed"],
    }
    for function, parameters in expected.items():
        assert list(inspect.signature(function).parameters) == parameters
    assert list(inspect.signature(Item).parameters) == ["sample_id", "sha256", "label", "group_label"]


def test_groups_join_shared_labels_and_identical_content_transitively():
    items = [
        Item("x1", sha("1"), 0, "patient-x"),
        Item("x2", sha("2"), 1, "patient-x"),
        Item("copy-of-x2", sha("2"), 1, None),  # same content as x2: joins patient-x
        Item("y1", sha("3"), 1, "patient-y"),
        Item("lonely", sha("4"), 0, None),
    ]
    groups = build_groups(items, seed=0)
    members = {frozenset(items[i].sample_id for i in g.members): g for g in groups}
    assert set(members) == {frozenset({"x1", "x2", "copy-of-x2"}), frozenset({"y1"}), frozenset({"lonely"})}
    joined = members[frozenset({"x1", "x2", "copy-of-x2"})]
    assert joined.name == "patient-x" and joined.label == 1  # majority label of its members
    assert members[frozenset({"lonely"})].name == f"sha256:{sha('4')[:12]}"
    assert [g.order_key for g in groups] == sorted(g.order_key for g in groups)


def test_majority_ties_go_to_the_smallest_label():
    items = [Item("u", sha("u"), 1, "g"), Item("v", sha("v"), 0, "g")]
    assert build_groups(items, seed=3)[0].label == 0


def test_split_is_stratified_and_keeps_every_group_on_one_side():
    items = patients(per_class=20, slices=3)
    splits, groups = assign_splits(items, CLASSES, test_fraction=0.25, val_fraction=0.2, seed=5)
    assert set(splits) == set(SPLITS)
    side_of_group: dict[str, set[str]] = {}
    for split, group in zip(splits, groups, strict=True):
        side_of_group.setdefault(group, set()).add(split)
    assert all(len(sides) == 1 for sides in side_of_group.values())
    assert len(side_of_group) == 40
    for label in range(len(CLASSES)):
        counts = Counter(s for s, item in zip(splits, items, strict=True) if item.label == label)
        assert counts == {"test": 15, "val": 9, "train": 36}  # 5 test, 3 val, 12 train patients of 3 slices


def test_split_depends_on_content_and_seed_not_on_order():
    items = patients(per_class=15)
    reference = by_id(items, assign_splits(items, CLASSES, 0.3, 0.2, seed=11)[0])
    shuffled = items[::-1]
    assert by_id(shuffled, assign_splits(shuffled, CLASSES, 0.3, 0.2, seed=11)[0]) == reference
    assert by_id(items, assign_splits(items, CLASSES, 0.3, 0.2, seed=12)[0]) != reference


def test_a_class_with_too_few_groups_is_refused_in_one_line():
    items = [*patients(per_class=6), Item("c/1", sha("c1"), 2, "pc"), Item("c/2", sha("c2"), 2, "pc")]
    with pytest.raises(DataError, match="'c' has only 1 independent group") as error:
        assign_splits(items, (*CLASSES, "c"), 0.3, 0.2, seed=0)
    assert "\n" not in str(error.value)


def test_small_classes_still_get_a_group_on_every_side():
    items = patients(per_class=3)
    splits, _ = assign_splits(items, CLASSES, test_fraction=0.05, val_fraction=0.05, seed=0)
    for label in range(len(CLASSES)):
        assert {s for s, item in zip(splits, items, strict=True) if item.label == label} == set(SPLITS)


def test_folds_test_every_item_once_and_never_split_a_group():
    items = patients(per_class=12, slices=2)
    folds = 4
    tested = Counter()
    for fold in range(folds):
        splits, groups = assign_fold(items, CLASSES, fold, folds, val_fraction=0.2, seed=9)
        assert set(splits) == set(SPLITS)
        side_of_group: dict[str, set[str]] = {}
        for split, group in zip(splits, groups, strict=True):
            side_of_group.setdefault(group, set()).add(split)
        assert all(len(sides) == 1 for sides in side_of_group.values())
        tested.update(item.sample_id for item, split in zip(items, splits, strict=True) if split == "test")
        per_class = Counter(item.label for item, split in zip(items, splits, strict=True) if split == "test")
        assert per_class == {0: 6, 1: 6}  # 3 of each class's 12 patients, 2 slices each
    assert set(tested.values()) == {1} and len(tested) == len(items)
    again = assign_fold(items[::-1], CLASSES, 2, folds, 0.2, seed=9)[0]
    assert by_id(items[::-1], again) == by_id(items, assign_fold(items, CLASSES, 2, folds, 0.2, seed=9)[0])


def test_too_many_folds_for_the_groups_is_refused():
    with pytest.raises(DataError, match="5-fold cross-validation needs at least 6"):
        assign_fold(patients(per_class=5), CLASSES, 0, 5, 0.2, seed=0)


def test_external_data_goes_entirely_to_test_with_its_group_names():
    items = patients(per_class=2, slices=2)
    splits, groups = assign_all_to_test(items, seed=0)
    assert splits == ["test"] * len(items)
    assert groups == [item.group_label for item in items]


def test_fractions_that_leave_too_little_training_data_are_refused():
    core.check_fractions(0.15, 0.18)  # 70 / 15 / 15
    with pytest.raises(ValueError, match=r"leave 10\.0% of each class for training"):
        core.check_fractions(0.5, 0.8)
    with pytest.raises(ValueError, match="no less than validation"):
        core.check_fractions(0.2, 0.6)  # train 32 %, validation 48 %


def test_split_or_fold_is_the_fold_under_cv_and_the_split_otherwise():
    items = patients(8)
    classes = ("a", "b")
    assert core.split_or_fold(items, classes, (0.25, 0.2), 3, None) == core.assign_splits(
        items, classes, 0.25, 0.2, 3
    )
    assert core.split_or_fold(items, classes, (0.25, 0.2), 3, (1, 4)) == core.assign_fold(
        items, classes, 1, 4, 0.2, 3
    )
