"""Simple statistics of the canonical images, the pixels a model actually sees.

Converting every file to RGB at one size removes the storage flags (mode, format, size) but not how the
pictures themselves were produced: brightness and windowing, black borders, colour tints, sharpness.
If such statistics predict the class, a model can learn the acquisition instead of the disease (or the
disease really changes them: the audit cannot tell which). :mod:`ctframe_folder_split.shortcut` asks how
well they predict the class under grouped cross-validation.
"""

from __future__ import annotations

import numpy as np

from ctframe_folder_split.cache import NoStore

# ITU-R BT.601 luma weights, as in sequence.thumbnail.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
DARK_LEVEL = 16
"""Grey levels below this count as background (air and black padding around a CT crop)."""
BRIGHT_LEVEL = 240
FRAME_SHARE = 0.125
"""Width of the outer frame, as a share of the side, compared with the centre (borders, letterboxing)."""

FEATURE_NAMES: tuple[str, ...] = (
    "mean",
    "sd",
    *(f"p{q}" for q in PERCENTILES),
    "dark share",
    "bright share",
    "frame mean",
    "centre mean",
    "frame dark share",
    "mean |R-G|",
    "mean |G-B|",
    "colour pixel share",
    "mean gradient",
    "grey levels used",
    "entropy",
)

FAMILIES: dict[str, tuple[str, ...]] = {
    "intensity (mean, sd, percentiles)": ("mean", "sd", *(f"p{q}" for q in PERCENTILES)),
    "background and frame (dark / bright share, frame vs centre)": (
        "dark share",
        "bright share",
        "frame mean",
        "centre mean",
        "frame dark share",
    ),
    "colour (channel differences)": ("mean |R-G|", "mean |G-B|", "colour pixel share"),
    "texture (gradient, grey levels, entropy)": ("mean gradient", "grey levels used", "entropy"),
    "all pixel statistics": FEATURE_NAMES,
}
"""Feature groups the audit tries one by one and together; the names say what a finding points at."""


def pixel_statistics(image: np.ndarray) -> np.ndarray:
    """One float64 vector (:data:`FEATURE_NAMES` order) of a canonical ``(3, S, S)`` uint8 RGB image.

    Percentiles come from the histogram of rounded grey levels (exact for 8-bit data, and cheaper
    than sorting 50,000 pixels per image).
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3 or array.shape[1] < 2 or array.shape[2] < 2:
        raise ValueError(f"expected a (3, S, S) RGB image of at least 2 x 2 pixels, got shape {array.shape}")
    channels = array.astype(np.float32)
    grey = np.tensordot(_LUMA, channels, axes=1)
    levels = np.rint(grey).astype(np.int64).clip(0, 255)
    histogram = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    total = histogram.sum()
    cumulative = np.cumsum(histogram) / total
    percentiles = [float(np.searchsorted(cumulative, q / 100.0)) for q in PERCENTILES]
    side_y, side_x = grey.shape
    width = max(1, round(FRAME_SHARE * min(side_y, side_x)))
    frame = np.ones(grey.shape, dtype=bool)
    frame[width:-width, width:-width] = False
    centre = ~frame
    frame_values = grey[frame]
    centre_values = grey[centre] if centre.any() else grey.ravel()
    red, green, blue = channels
    colour = (np.abs(red - green) > 1) | (np.abs(green - blue) > 1)
    gradient = (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2
    used = histogram[histogram > 0] / total
    return np.array(
        [
            float(grey.mean()),
            float(grey.std()),
            *percentiles,
            float((grey < DARK_LEVEL).mean()),
            float((grey > BRIGHT_LEVEL).mean()),
            float(frame_values.mean()),
            float(centre_values.mean()),
            float((frame_values < DARK_LEVEL).mean()),
            float(np.abs(red - green).mean()),
            float(np.abs(green - blue).mean()),
            float(colour.mean()),
            float(gradient),
            float(used.size),
            float(-(used * np.log2(used)).sum()),
        ]
    )


class PixelStatisticsStore(NoStore):
    """A store that keeps nothing but the statistics of every image put into it (for the audit).

    The scan decodes each file once and hands the canonical image to ``put``; computing the statistics
    there costs no second decode. Rows of files that never reached ``put`` (unusable) stay NaN.
    """

    def __init__(self, count: int, image_size: int, max_pixels: int):
        super().__init__(image_size, max_pixels)
        self.features = np.full((count, len(FEATURE_NAMES)), np.nan)

    def put(self, index: int, sha256: str, image: np.ndarray) -> None:
        # Each scan thread writes its own row: no lock needed.
        self.features[index] = pixel_statistics(image)


def columns(names: tuple[str, ...]) -> list[int]:
    """Column indices of the named features."""
    return [FEATURE_NAMES.index(name) for name in names]
