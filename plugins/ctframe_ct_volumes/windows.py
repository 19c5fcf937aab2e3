"""Hounsfield windows: HU slices to the (3, H, W) uint8 images every ctframe backbone takes, and slice choice.

A window is a centre and a width in Hounsfield units (HU). Values inside ``[centre - width/2,
centre + width/2]`` map linearly onto 0..255; values below the window become 0, above it 255.
Rounding: ``(hu - low) / width * 255`` (in float32) is rounded to the nearest integer, halves to even
(``numpy.rint``), so the window's low edge is 0, its high edge 255 and its centre 128 (127.5 rounds up
to the even 128).

One window repeats into the three channels (a grey image); three windows fill the R, G and B channels
in order (e.g. lung, mediastinum, bone), so one image carries air, soft tissue and bone contrast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from ctframe import DataError


@dataclass(frozen=True)
class Window:
    """A Hounsfield window: ``centre`` and ``width`` in HU (width > 0)."""

    centre: float
    width: float
    name: str = "custom"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.centre) and np.isfinite(self.width) and self.width > 0):
            raise DataError(
                f"window {self.name!r} needs a finite centre and a positive width, got "
                f"centre {self.centre}, width {self.width}"
            )

    @property
    def low(self) -> float:
        return self.centre - self.width / 2

    @property
    def high(self) -> float:
        return self.centre + self.width / 2


PRESETS: dict[str, Window] = {
    # lung parenchyma and airways: -1350..150 HU, so air, lung and soft tissue stay apart
    "lung": Window(-600, 1500, "lung"),
    # heart, vessels, lymph nodes: -125..225 HU, fat darker than muscle, contrast-filled vessels bright
    "mediastinum": Window(50, 350, "mediastinum"),
    # cortical and trabecular bone: -500..1300 HU
    "bone": Window(400, 1800, "bone"),
}

WindowSpec = str | tuple[float, float] | Sequence[float] | Window
"""A preset name (``"lung"``, ``"mediastinum"``, ``"bone"``), a ``(centre, width)`` pair or a Window."""


def get_window(spec: WindowSpec) -> Window:
    """The Window that ``spec`` names: a preset name, a ``(centre, width)`` pair or a Window."""
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise DataError(f"unknown window {spec!r}; use one of {', '.join(PRESETS)} or [centre, width]")
        return PRESETS[spec]
    values = list(spec)
    if len(values) != 2:
        raise DataError(f"a custom window is [centre, width], got {values!r}")
    return Window(float(values[0]), float(values[1]))


def get_windows(spec: WindowSpec | Sequence[WindowSpec]) -> tuple[Window, Window, Window]:
    """The three channel windows: one window repeated, or three windows for R, G and B."""
    if isinstance(spec, (str, Window)):
        one = get_window(spec)
        return one, one, one
    items = list(spec)
    if len(items) == 2 and all(isinstance(v, Real) for v in items):
        one = get_window(items)  # a single (centre, width) pair
        return one, one, one
    if len(items) == 1:
        one = get_window(items[0])
        return one, one, one
    if len(items) != 3:
        raise DataError(f"give one window or three (one per RGB channel), got {len(items)}")
    r, g, b = (get_window(item) for item in items)
    return r, g, b


def to_uint8(hu: np.ndarray, window: WindowSpec) -> np.ndarray:
    """Map HU values (a slice or a volume, any shape) through ``window`` to uint8 of the same shape.

    Linear inside the window, clipped outside, rounded to nearest with halves to even (module docstring).
    Non-finite values are refused: they mean a damaged or wrongly rescaled image.
    """
    w = get_window(window)
    values = np.asarray(hu, dtype=np.float32)
    if not np.isfinite(values).all():
        raise DataError("the HU image holds NaN or infinite values")
    # dividing before scaling keeps the centre at exactly 0.5 * 255 in float32
    scaled = (values - np.float32(w.low)) / np.float32(w.width) * np.float32(255)
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def to_channels(hu: np.ndarray, windows: WindowSpec | Sequence[WindowSpec] = "lung") -> np.ndarray:
    """Three-channel uint8 images: a (H, W) slice gives (3, H, W), a (S, H, W) volume (S, 3, H, W).

    ``windows`` is one window (repeated into the three channels) or three (R, G, B); see get_windows.
    """
    values = np.asarray(hu, dtype=np.float32)
    if values.ndim not in (2, 3):
        raise DataError(f"expected a (H, W) slice or a (S, H, W) volume, got shape {values.shape}")
    chosen = get_windows(windows)
    axis = 0 if values.ndim == 2 else 1
    if chosen[0] == chosen[1] == chosen[2]:
        one = to_uint8(values, chosen[0])
        return np.repeat(np.expand_dims(one, axis), 3, axis=axis)
    return np.stack([to_uint8(values, w) for w in chosen], axis=axis)


LUNG_HU = (-950.0, -400.0)
"""HU range counted as aerated lung (inclusive); below -950 is air outside the body (about -1000 HU),
emphysema-free lung sits near -850, and above -400 begins soft tissue, vessels and consolidation."""

LUNG_MIN_SHARE = 0.10
"""The least share of a slice's field of view in LUNG_HU for the slice to count as showing lung."""


def lung_shares(volume: np.ndarray) -> np.ndarray:
    """Per slice of a (S, H, W) HU volume: the share of the non-air field of view that is lung-like.

    The field of view is every pixel at or above -950 HU (the low end of LUNG_HU): that drops the air
    around the body (about -1000 HU) and the scanner's padding outside the reconstruction circle
    (-1024 HU and below). Lung-like pixels lie in LUNG_HU. A slice without any such pixel has share 0.
    """
    values = np.asarray(volume, dtype=np.float32)
    if values.ndim != 3:
        raise DataError(f"expected a (S, H, W) volume, got shape {values.shape}")
    low, high = LUNG_HU
    body = (values >= low).sum(axis=(1, 2))
    lung = ((values >= low) & (values <= high)).sum(axis=(1, 2))
    return np.divide(lung, body, out=np.zeros(len(values), dtype=np.float64), where=body > 0)


def select_slices(
    volume: np.ndarray, rule: str = "all", *, step: int = 1, min_lung_share: float = LUNG_MIN_SHARE
) -> np.ndarray:
    """Indices (ascending) of the slices of a (S, H, W) HU volume to use.

    ``rule``: ``"all"`` every slice; ``"every"`` every ``step``-th slice from the first; ``"lung"`` the
    slices whose lung share (lung_shares) is at least ``min_lung_share`` (default 0.10: a tenth of the
    field of view between -950 and -400 HU). ``"lung"`` may select nothing (a scan that misses the
    chest); the caller decides what that means.
    """
    values = np.asarray(volume)
    if values.ndim != 3:
        raise DataError(f"expected a (S, H, W) volume, got shape {values.shape}")
    if rule == "all":
        return np.arange(len(values))
    if rule == "every":
        if step < 1:
            raise DataError(f"slice step must be at least 1, got {step}")
        return np.arange(0, len(values), step)
    if rule == "lung":
        if not 0 < min_lung_share <= 1:
            raise DataError(f"min_lung_share must be in (0, 1], got {min_lung_share}")
        return np.flatnonzero(lung_shares(values) >= min_lung_share)
    raise DataError(f"unknown slice rule {rule!r}; use all, every or lung")
