"""Recipe options of the ``ct_volumes`` dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ctframe import Options, RecipePath
from ctframe.api import cache_folder
from ctframe.api.data import check_fractions

"""The least share of the patients that test_fraction and val_fraction may leave for training."""

WINDOW_NAMES = ("lung", "mediastinum", "bone")


def parse_window(text: str) -> str | tuple[float, float]:
    """A preset name, or "C,W" as a (centre, width) pair; ValueError for anything else."""
    name = text.strip()
    if name in WINDOW_NAMES:
        return name
    parts = name.split(",")
    try:
        centre, width = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"window {text!r} is none of {', '.join(WINDOW_NAMES)} nor 'centre,width'") from None
    if width <= 0:
        raise ValueError(f"window {text!r} needs a positive width")
    return centre, width


class CtVolumesOptions(Options):
    root: RecipePath = Field(description="Folder of CT series (DICOM, any nesting) and/or NIfTI volumes")
    labels: RecipePath | None = Field(
        None, description="Labels CSV (a key column and label); optional when root has one folder per class"
    )
    label_key: Literal["patient", "study", "series", "path"] = Field(
        "patient",
        description="CSV key column: patient_id, study_id, series_id or path (series folder or NIfTI file)",
    )
    classes: list[str] = Field(min_length=2, description="Class names; their order defines label indices")
    positive_class: str | None = Field(
        None, description="The class precision, recall and ROC are computed for (required for two classes)"
    )
    window: str = Field("lung", description='HU window: "lung", "mediastinum", "bone" or "centre,width"')
    windows: list[str] | None = Field(
        None, description="Three windows for the R, G and B channels (overrides window)"
    )
    slices: Literal["all", "every", "lung"] = Field(
        "all", description="Slices used: all, every slice_step-th, or those showing lung"
    )
    slice_step: int = Field(1, ge=1, le=1000, description='Step between slices for slices = "every"')
    image_size: int = Field(224, ge=8, le=4096, description="Side of the square RGB slice images in pixels")
    test_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of each class's patients held out for testing"
    )
    val_fraction: float = Field(
        0.15, gt=0, lt=1, description="Share of the remaining training patients used for validation"
    )
    pseudonym_key_file: RecipePath | None = Field(
        None, description="File holding the pseudonym key (default: $CTFRAME_PSEUDONYM_KEY)"
    )
    raw_ids: bool = Field(False, description="Write raw patient/study/series ids instead of pseudonyms")
    cache: bool = Field(
        True,
        description="Keep decoded, windowed slices on disk so later epochs, runs and folds do not decode "
        "DICOM again",
    )
    cache_dir: RecipePath | None = Field(
        None,
        description="Folder of the slice cache (default: $CTFRAME_CACHE_DIR/ct_volumes, else "
        "$XDG_CACHE_HOME/ctframe/ct_volumes, else ~/.cache/ctframe/ct_volumes)",
    )
    subgroups: list[Literal["manufacturer", "kernel", "slice_thickness"]] = Field(
        ["manufacturer", "kernel", "slice_thickness"],
        description="Acquisition fields offered as subgroup variables: test metrics per scanner "
        "manufacturer, reconstruction kernel and slice thickness band (<= 1.5, 1.5-3, > 3 mm); [] for none",
    )

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, classes: list[str]) -> list[str]:
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be distinct, got {classes}")
        if any(not name.strip() for name in classes):
            raise ValueError("class names must not be empty")
        return classes

    @field_validator("window")
    @classmethod
    def _known_window(cls, window: str) -> str:
        parse_window(window)
        return window

    @field_validator("windows")
    @classmethod
    def _three_windows(cls, windows: list[str] | None) -> list[str] | None:
        if windows is not None:
            if len(windows) != 3:
                raise ValueError(f"windows names three windows (R, G, B), got {len(windows)}")
            for window in windows:
                parse_window(window)
        return windows

    @field_validator("val_fraction")
    @classmethod
    def _fractions_leave_training_data(cls, val_fraction: float, info: ValidationInfo) -> float:
        test_fraction = info.data.get("test_fraction")
        if test_fraction is not None:  # else invalid itself: that error is reported
            check_fractions(test_fraction, val_fraction)
        return val_fraction

    @model_validator(mode="after")
    def _positive_is_a_class(self) -> CtVolumesOptions:
        if self.positive_class is None:
            if len(self.classes) == 2:
                raise ValueError(f"name the positive class of {self.classes} (set positive_class)")
        elif self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of classes {self.classes}")
        return self

    @property
    def positive(self) -> str:
        """The positive class; with more than two classes and none named, the first class."""
        return self.positive_class if self.positive_class is not None else self.classes[0]

    def cache_folder(self) -> Path:
        """Where the slice cache lives: cache_dir, else ctframe's cache folder's ct_volumes/
        ($CTFRAME_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, then ctframe/)."""
        return Path(self.cache_dir) if self.cache_dir is not None else cache_folder("ct_volumes")

    def channel_windows(self) -> list[str | tuple[float, float]]:
        """The window of each RGB channel, as windows.get_windows takes them."""
        chosen = self.windows if self.windows is not None else [self.window] * 3
        return [parse_window(window) for window in chosen]
