"""volumes.slice_images: HU volume -> windowed, resized uint8 RGB slices (the images every run sees)."""

from __future__ import annotations

import numpy as np
import torch
from ctframe_ct_volumes.volumes import slice_images
from ctframe_ct_volumes.windows import to_channels


def _volume(slices: int = 5, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1100, 1400, size=(slices, size, size)).astype(np.float32)


def _float_reference(hu: np.ndarray, windows: list, size: int) -> torch.Tensor:
    """The same resize in fp32, rounded once at the end."""
    images = torch.from_numpy(to_channels(hu, windows)).float()
    resized = torch.nn.functional.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized.round().clamp(0, 255).to(torch.uint8)


def test_resizing_up_and_down_stays_within_one_grey_level_of_fp32():
    hu = _volume()
    for size, windows in ((40, ["lung"] * 3), (11, ["lung", "mediastinum", "bone"])):
        got = torch.stack([image for _, image in slice_images(hu, windows, "all", 1, size)])
        expected = _float_reference(hu, windows, size)
        assert got.dtype == torch.uint8 and got.shape == (5, 3, size, size)
        assert (got.int() - expected.int()).abs().max() <= 1
        assert (got.int() != expected.int()).float().mean() < 0.5


def test_one_window_fills_three_equal_channels_and_three_windows_differ():
    hu = _volume()
    (_, grey), *_ = slice_images(hu, ["lung"] * 3, "all", 1, 16)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    (_, colour), *_ = slice_images(hu, ["lung", "mediastinum", "bone"], "all", 1, 16)
    assert not torch.equal(colour[0], colour[1]) and not torch.equal(colour[1], colour[2])
    assert grey.is_contiguous() and colour.is_contiguous()


def test_a_slice_of_the_target_size_is_only_windowed_and_every_kth_keeps_indices():
    hu = _volume(slices=7)
    pairs = slice_images(hu, ["bone"] * 3, "every", 3, 24)
    assert [index for index, _ in pairs] == [0, 3, 6]
    expected = torch.from_numpy(to_channels(hu[[0, 3, 6]], ["bone"] * 3))
    assert torch.equal(torch.stack([image for _, image in pairs]), expected)
