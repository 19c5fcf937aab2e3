"""Recipe options of the ``folder_split`` dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ctframe import Options, RecipePath
from ctframe.api import cache_folder
from ctframe.api.data import check_fractions
from ctframe_folder_split.components import DEFAULT_MAX_GROUP_SHARE
from ctframe_folder_split.leakage import DEFAULT_LEVEL
from ctframe_folder_split.sequence import DEFAULT_GROUP_THRESHOLD

"""The least share of each class that test_fraction and val_fraction may leave for training."""


def default_cache_dir() -> Path:
    return cache_folder("images")


class FolderSplitOptions(Options):
    root: RecipePath = Field(description="Folder holding one sub-folder of images per class")
    classes: list[str] = Field(
        min_length=2, description="Class folder names; their order defines label indices (0, 1, ...)"
    )
    positive_class: str | None = Field(
        None,
        description="The class that precision, recall and ROC are computed for; one of `classes`. Required "
        "for two classes; with more, metrics average over all classes (macro by default) and this only "
        "picks the class of the report's ROC curves (default: the first class)",
    )
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of each class held out for testing")
    val_fraction: float = Field(
        0.15, gt=0, lt=1, description="Share of the remaining training part used for validation"
    )
    test_only: bool = Field(
        False,
        description="Put every image in test (external evaluation data: ctframe evaluate --data RECIPE); "
        "the fractions are then ignored",
    )
    image_size: int = Field(224, ge=8, le=4096, description="Side of the square RGB images in pixels")
    group_by: str | None = Field(
        None,
        description='Keep groups in one split: a CSV file (file -> group), "regex:<pattern>" on the '
        'file name, or "sequence"',
    )
    group_column: str = Field("group", description="Group column of the group_by CSV file")
    sequence_pattern: str | None = Field(
        None,
        description='group_by="sequence": regex capturing the slice number (default: natural order)',
    )
    group_threshold: float = Field(
        DEFAULT_GROUP_THRESHOLD,
        ge=-1,
        le=1,
        description='group_by="sequence": thumbnail correlation below which a new group starts',
    )
    leakage_threshold: float = Field(
        DEFAULT_LEVEL,
        ge=-1,
        le=1,
        description="Thumbnail correlation from which a test/train pair is a near-copy",
    )
    link_near_copies: bool = Field(
        True,
        description='group_by="sequence": also join any two images of a class whose thumbnail correlation '
        "reaches leakage_threshold, however far apart their numbers (then the leakage check is quiet)",
    )
    max_group_share: float = Field(
        DEFAULT_MAX_GROUP_SHARE,
        gt=0,
        le=1,
        description="Warn when one group holds more than this share of a class's images (chained groups)",
    )
    leakage_check: bool = Field(True, description="Look for near-duplicate test/train pairs after splitting")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="What to do with unreadable files: fail listing them all, or skip and record"
    )
    materialize: Literal["none", "hardlink", "copy"] = Field(
        "none", description="Also lay the split out as split/<split>/<class>/ folders"
    )
    materialize_dir: RecipePath | None = Field(
        None, description="Where to materialise the split (default: <run dir>/split)"
    )
    reuse_manifest: RecipePath | None = Field(
        None, description="split_manifest.csv of an earlier run whose split to reuse exactly"
    )
    rotation_degrees: float = Field(
        0.0, ge=0, le=180, description="Training augmentation: random rotation up to +-degrees (0 = off)"
    )
    horizontal_flip: bool = Field(False, description="Training augmentation: random horizontal flip")
    zoom_range: float = Field(
        0.0, ge=0, lt=1, description="Training augmentation: random zoom by a factor in 1 +- range (0 = off)"
    )
    cache: Literal["memory", "disk", "none"] = Field(
        "memory", description="Keep decoded, resized images in memory, on disk (memory map) or nowhere"
    )
    cache_dir: RecipePath | None = Field(
        None,
        description="Disk cache folder (default: $CTFRAME_CACHE_DIR/images, else ~/.cache/ctframe/images)",
    )
    num_workers: int = Field(2, ge=0, le=64, description="Threads that decode images; loader workers too")
    max_image_pixels: int = Field(
        64_000_000, ge=1, description="Images with more pixels are rejected (decompression bomb guard)"
    )
    download_hint: str = Field("", description="Text added to the error when root is missing")
    demo_if_missing: bool = Field(
        False, description="Generate the small synthetic demo data set in root when root is missing"
    )

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, classes: list[str]) -> list[str]:
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be distinct, got {classes}")
        for name in classes:
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(f"class {name!r} must be a plain folder name")
        return classes

    @field_validator("group_by")
    @classmethod
    def _known_grouping(cls, group_by: str | None) -> str | None:
        if group_by is None or group_by == "sequence":
            return group_by
        if group_by.startswith("regex:"):
            import re

            try:
                re.compile(group_by[len("regex:") :])
            except re.error as error:
                raise ValueError(f"group_by regex does not compile: {error}") from None
            return group_by
        if not group_by.strip():
            raise ValueError('group_by must be a CSV path, "regex:<pattern>" or "sequence"')
        return group_by

    @property
    def positive(self) -> str:
        """The positive class; with more than two classes and none named, the first class."""
        return self.positive_class if self.positive_class is not None else self.classes[0]

    @model_validator(mode="after")
    def _positive_is_a_class(self) -> FolderSplitOptions:
        if self.positive_class is None:
            if len(self.classes) == 2:
                raise ValueError(
                    f"name the positive class of {self.classes}: precision, recall and ROC AUC are "
                    "computed for it (set positive_class)"
                )
            return self
        if self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of classes {self.classes}")
        return self

    @field_validator("val_fraction")
    @classmethod
    def _fractions_leave_training_data(cls, val_fraction: float, info: ValidationInfo) -> float:
        test_fraction = info.data.get("test_fraction")
        if test_fraction is not None:  # else invalid itself: that error is reported
            check_fractions(test_fraction, val_fraction)
        return val_fraction

    def group_csv(self, recipe_dir: Path) -> Path | None:
        """The group CSV path (relative paths resolve against the recipe folder), if group_by names one."""
        if self.group_by is None or self.group_by == "sequence" or self.group_by.startswith("regex:"):
            return None
        path = Path(self.group_by).expanduser()
        return path if path.is_absolute() else (recipe_dir / path).absolute()

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()
