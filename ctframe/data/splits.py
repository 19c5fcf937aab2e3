"""Seeded, stratified, group-aware train / val / test split and k-fold assignment, for every dataset.

Items that share a group label (a patient, a sequence run) or identical content always land on the
same side. The order in which groups are considered comes from a hash of the seed and the members'
content hashes, never from listing order or torch's random state, so the same files and seed give
the same split on every machine (and renaming files does not move them).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ctframe.base.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    sample_id: str
    sha256: str
    label: int
    group_label: str | None = None
    """From group_by (patient id, sequence run); ``None`` when not grouping."""


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[int, ...]
    """Indices into the item list."""
    label: int
    """Majority label of the members (smallest index on ties); used for stratification."""
    order_key: str


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def build_groups(items: Sequence[Item], seed: int) -> list[Group]:
    """Connected components of "same group label" and "same content"."""
    union = _UnionFind(len(items))
    first_of: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        for key in (("sha", item.sha256), ("group", item.group_label)):
            if key[1] is None:
                continue
            if key in first_of:
                union.union(first_of[key], index)
            else:
                first_of[key] = index
    members: dict[int, list[int]] = defaultdict(list)
    for index in range(len(items)):
        members[union.find(index)].append(index)
    groups = []
    for indices in members.values():
        labels = Counter(items[i].label for i in indices)
        majority = min(labels, key=lambda label: (-labels[label], label))
        named = sorted({items[i].group_label for i in indices if items[i].group_label is not None})
        shas = sorted({items[i].sha256 for i in indices})
        name = "+".join(named) if named else f"sha256:{shas[0][:12]}"
        order_key = hashlib.sha256("\n".join([str(seed), *shas]).encode()).hexdigest()
        groups.append(Group(name, tuple(indices), majority, order_key))
    groups.sort(key=lambda group: group.order_key)
    return groups


def _take(groups: list[Group], fraction: float) -> tuple[list[Group], list[Group]]:
    """Walk groups in their hashed order, taking each one that brings the count closer to the target."""
    total = sum(len(group.members) for group in groups)
    target = fraction * total
    taken: list[Group] = []
    rest: list[Group] = []
    count = 0
    for group in groups:
        size = len(group.members)
        if abs(count + size - target) < abs(count - target):
            taken.append(group)
            count += size
        else:
            rest.append(group)
    if not taken and len(rest) > 1:  # a tiny class still gets one group on each side
        taken.append(rest.pop(0))
    return taken, rest


def assign_splits(
    items: Sequence[Item],
    class_names: Sequence[str],
    test_fraction: float,
    val_fraction: float,
    seed: int,
) -> tuple[list[str], list[str]]:
    """Split name and group name for every item."""
    groups = build_groups(items, seed)
    by_class: dict[int, list[Group]] = defaultdict(list)
    for group in groups:
        by_class[group.label].append(group)
    split_of_group: dict[str, str] = {}
    for label in sorted({item.label for item in items}):
        class_groups = by_class[label]  # empty when every image of the class is a copy of another class's
        if len(class_groups) < 3:
            raise DataError(
                f"class {class_names[label]!r} has only {len(class_groups)} independent group(s) of images "
                "(after merging duplicates and group_by groups); train, validation and test need one each - "
                "add images or use coarser grouping"
            )
        test, train = _take(class_groups, test_fraction)
        val, train = _take(train, val_fraction)
        parts = {"train": train, "val": val, "test": test}
        for empty in [name for name, part in parts.items() if not part]:
            donor = max(parts.values(), key=len)  # >= 3 groups, so some part has two
            parts[empty].append(donor.pop())
        for split, chosen in (("train", train), ("val", val), ("test", test)):
            for group in chosen:
                split_of_group[group.order_key] = split
    splits = [""] * len(items)
    names = [""] * len(items)
    for group in groups:
        for index in group.members:
            splits[index] = split_of_group[group.order_key]
            names[index] = group.name
    return splits, names


def _fold_of_groups(class_groups: list[Group], folds: int) -> list[list[Group]]:
    """Deal a class's groups (in their seeded hash order) to ``folds`` folds, each group to the fold
    that holds the fewest images of the class so far: folds of near-equal size, every group in one."""
    dealt: list[list[Group]] = [[] for _ in range(folds)]
    sizes = [0] * folds
    for group in sorted(class_groups, key=lambda g: -len(g.members)):  # big groups first balance best
        smallest = min(range(folds), key=lambda fold: (sizes[fold], fold))
        dealt[smallest].append(group)
        sizes[smallest] += len(group.members)
    return dealt


def assign_fold(
    items: Sequence[Item],
    class_names: Sequence[str],
    fold: int,
    folds: int,
    val_fraction: float,
    seed: int,
) -> tuple[list[str], list[str]]:
    """Split and group name per item for fold ``fold`` of a stratified, group-disjoint ``folds``-fold
    split: test is that fold; validation comes from the other folds' groups by ``val_fraction``.

    The folds depend only on the items and ``seed``, so the ``folds`` runs of one cross-validation
    test every image exactly once.
    """
    groups = build_groups(items, seed)
    by_class: dict[int, list[Group]] = defaultdict(list)
    for group in groups:
        by_class[group.label].append(group)
    split_of_group: dict[str, str] = {}
    for label in sorted({item.label for item in items}):
        class_groups = by_class[label]
        if len(class_groups) < folds + 1:
            raise DataError(
                f"class {class_names[label]!r} has {len(class_groups)} independent group(s) of images; "
                f"{folds}-fold cross-validation needs at least {folds + 1} (one per fold, plus validation) - "
                "use fewer folds or coarser grouping"
            )
        dealt = _fold_of_groups(class_groups, folds)
        rest = [group for index, part in enumerate(dealt) if index != fold for group in part]
        rest.sort(key=lambda g: g.order_key)
        val, train = _take(rest, val_fraction)
        if not train:
            train.append(val.pop())
        for split, chosen in (("test", dealt[fold]), ("val", val), ("train", train)):
            for group in chosen:
                split_of_group[group.order_key] = split
    splits = [split_of_group[group.order_key] for group in groups for _ in group.members]
    order = [index for group in groups for index in group.members]
    result_split = [""] * len(items)
    result_group = [""] * len(items)
    for position, index in enumerate(order):
        result_split[index] = splits[position]
    for group in groups:
        for index in group.members:
            result_group[index] = group.name
    return result_split, result_group


def assign_all_to_test(items: Sequence[Item], seed: int) -> tuple[list[str], list[str]]:
    """Every item in test (external evaluation data), with its group name."""
    names = [""] * len(items)
    for group in build_groups(items, seed):
        for index in group.members:
            names[index] = group.name
    return ["test"] * len(items), names


MIN_TRAIN_SHARE = 0.1
"""The least share of each class a split may leave for training."""


def check_fractions(test_fraction: float, val_fraction: float) -> None:
    """ValueError (an option validator's message) when the fractions leave too little for training.

    ``val_fraction`` is a share of what the test part leaves; training needs at least
    :data:`MIN_TRAIN_SHARE` of each class and no less than validation."""
    val = (1 - test_fraction) * val_fraction
    train = 1 - test_fraction - val
    if train < MIN_TRAIN_SHARE or train < val:
        raise ValueError(
            f"test_fraction {test_fraction} and val_fraction {val_fraction} leave {train:.1%} of each "
            "class for training "
            f"(test {test_fraction:.1%}, validation {val:.1%}: val_fraction is a share of what the test "
            f"part leaves); training needs at least {MIN_TRAIN_SHARE:.0%} and no less than validation; "
            "for train/val/test shares a/b/c set test_fraction = c and val_fraction = b / (a + b) "
            "(70/15/15: 0.15 and 0.18)"
        )


def split_or_fold(
    items: Sequence[Item],
    classes: Sequence[str],
    fractions: tuple[float, float],
    seed: int,
    fold: tuple[int, int] | None,
) -> tuple[list[str], list[str]]:
    """:func:`assign_fold` for a cross-validation fold ``(k, K)`` (``ctframe cv``), else
    :func:`assign_splits`; ``fractions`` is ``(test_fraction, val_fraction)``."""
    test_fraction, val_fraction = fractions
    if fold is not None:
        return assign_fold(items, classes, fold[0], fold[1], val_fraction, seed)
    return assign_splits(items, classes, test_fraction, val_fraction, seed)
