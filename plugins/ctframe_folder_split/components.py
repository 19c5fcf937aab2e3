"""How the images of each class fall into groups: counts, size distribution, the largest group.

Linking by similarity can chain: A looks like B, B like C, and one group swallows several patients. A
coarse group is leak-free but makes the split lumpy (one group above ``test_fraction`` of its class
cannot be placed without missing the target) and leaves fewer independent units for the bootstrap, so
the dataset and the audit report the structure and warn when one group holds too much of a class.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_GROUP_SHARE = 0.2
"""Warn when one group holds more than this share of a class. A patient of the SARS-CoV-2 release holds
about 1/60 of a class on average; a group of a fifth of the class is several patients chained together,
and one near the 30% test share cannot be placed without missing the target split sizes."""

SIZE_BINS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 4), (5, 9), (10, 19), (20, 49), (50, None))
"""Group-size bins of the distribution (inclusive; ``None``: no upper end)."""


def _bin_name(low: int, high: int | None) -> str:
    return str(low) if high == low else f"{low}+" if high is None else f"{low}-{high}"


@dataclass(frozen=True)
class ClassGroups:
    """The groups of one class."""

    class_name: str
    images: int
    groups: int
    largest: int
    """Images of this class in its largest group."""
    largest_group: str
    median_size: float
    sizes: dict[str, int]
    """Number of groups per size bin (:data:`SIZE_BINS`), e.g. ``{"1": 40, "2-4": 12, ...}``."""

    @property
    def largest_share(self) -> float:
        return self.largest / self.images if self.images else 0.0

    def line(self) -> str:
        bins = ", ".join(f"{name}: {count}" for name, count in self.sizes.items() if count)
        return (
            f"{self.class_name}: {self.groups} groups for {self.images} images (sizes {bins}; median "
            f"{self.median_size:g}, largest {self.largest} = {self.largest_share:.1%} of the class)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "groups": self.groups,
            "largest": self.largest,
            "largest_share": round(self.largest_share, 6),
            "largest_group": self.largest_group,
            "median_size": self.median_size,
            "sizes": dict(self.sizes),
        }


def group_structure(
    class_of: Sequence[str], group_of: Sequence[str], classes: Sequence[str]
) -> list[ClassGroups]:
    """One :class:`ClassGroups` per class (in ``classes`` order) from one class and group per image.

    A group holding images of several classes (a duplicate across classes, a patient id in two class
    folders) counts in each of them with the images it has there.
    """
    if len(class_of) != len(group_of):
        raise ValueError(f"need one group per image: {len(class_of)} classes, {len(group_of)} groups")
    per_class: dict[str, Counter] = {name: Counter() for name in classes}
    for class_name, group in zip(class_of, group_of, strict=True):
        if class_name not in per_class:
            raise ValueError(f"image of unknown class {class_name!r}; classes are {list(classes)}")
        per_class[class_name][group] += 1
    result = []
    for name in classes:
        counts = per_class[name]
        sizes = sorted(counts.values())
        binned = {
            _bin_name(low, high): sum(1 for s in sizes if s >= low and (high is None or s <= high))
            for low, high in SIZE_BINS
        }
        # Ties go to the smallest group name, so the report is repeatable.
        largest_group = min(counts, key=lambda g: (-counts[g], g)) if counts else ""
        result.append(
            ClassGroups(
                class_name=name,
                images=sum(sizes),
                groups=len(sizes),
                largest=counts[largest_group] if counts else 0,
                largest_group=largest_group,
                median_size=float(statistics.median(sizes)) if sizes else 0.0,
                sizes=binned,
            )
        )
    return result


def chaining_warnings(structure: Sequence[ClassGroups], max_share: float, group_by: str | None) -> list[str]:
    """One warning per class whose largest group holds more than ``max_share`` of it; what it means
    and what to change depend on the grouping mode."""
    if group_by == "sequence":
        cause = (
            "consecutive or near-copy links may have chained several patients together, which keeps the "
            "split leak-free but coarse; raise group_threshold (consecutive links) or look at the group's "
            "files (raising leakage_threshold loosens the near-copy links, and the leakage check with them)"
        )
    else:
        cause = (
            "one patient or source that large makes the split coarse and its test share uncertain; check "
            "the group column or pattern that put them together"
        )
    return [
        f"one group ({entry.largest_group}) holds {entry.largest} of the {entry.images} {entry.class_name} "
        f"images ({entry.largest_share:.0%}, more than max_group_share {max_share:.0%}): {cause}"
        for entry in structure
        if entry.images and entry.largest_share > max_share
    ]
