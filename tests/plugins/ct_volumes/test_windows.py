"""Hounsfield windows: edges, centre and clipping, RGB channels, and the lung slice rule."""

from __future__ import annotations

import numpy as np
import pytest
from ctframe_ct_volumes.windows import (
    LUNG_MIN_SHARE,
    PRESETS,
    Window,
    get_windows,
    lung_shares,
    select_slices,
    to_channels,
    to_uint8,
)

from ctframe import DataError


def test_presets_hold_the_clinical_values():
    assert (PRESETS["lung"].centre, PRESETS["lung"].width) == (-600, 1500)
    assert (PRESETS["mediastinum"].centre, PRESETS["mediastinum"].width) == (50, 350)
    assert (PRESETS["bone"].centre, PRESETS["bone"].width) == (400, 1800)
    assert (PRESETS["lung"].low, PRESETS["lung"].high) == (-1350, 150)


@pytest.mark.parametrize("window", ["lung", "mediastinum", "bone", (-100, 7), Window(10.5, 3)])
def test_edges_centre_and_clipping(window):
    w = get_windows(window)[0]
    hu = np.array([w.low - 1000, w.low, w.centre, w.high, w.high + 1000], dtype=np.float32)
    assert to_uint8(hu, window).tolist() == [0, 0, 128, 255, 255]


def test_linear_inside_the_window_with_documented_rounding():
    hu = np.array([[-1350, -1350 + 1500 / 255, -1350 + 1500 * 100.5 / 255, -1350 + 1500 * 101.5 / 255]])
    out = to_uint8(hu.astype(np.float32), "lung")
    assert out.dtype == np.uint8 and out.shape == (1, 4)
    assert out.tolist() == [[0, 1, 100, 102]]  # halves round to even
    ramp = to_uint8(np.linspace(-125, 225, 1000, dtype=np.float32), "mediastinum")
    assert np.all(np.diff(ramp.astype(int)) >= 0) and ramp[0] == 0 and ramp[-1] == 255


def test_a_single_window_repeats_into_three_channels():
    hu = np.random.default_rng(0).uniform(-1100, 500, (5, 6)).astype(np.float32)
    out = to_channels(hu, "lung")
    assert out.shape == (3, 5, 6) and out.dtype == np.uint8
    for channel in out:
        assert np.array_equal(channel, to_uint8(hu, "lung"))
    assert np.array_equal(to_channels(hu, (-600, 1500)), out)


def test_three_windows_fill_the_rgb_channels_in_order():
    hu = np.array([[-1000.0, 40.0, 1000.0]], dtype=np.float32)
    out = to_channels(hu, ["lung", "mediastinum", "bone"])
    assert out.shape == (3, 1, 3)
    assert np.array_equal(out[0], to_uint8(hu, "lung"))
    assert np.array_equal(out[1], to_uint8(hu, "mediastinum"))
    assert np.array_equal(out[2], to_uint8(hu, "bone"))
    volume = np.stack([hu, hu + 10])
    stacked = to_channels(volume, ["lung", "mediastinum", (0, 100)])
    assert stacked.shape == (2, 3, 1, 3)
    assert np.array_equal(stacked[1, 2], to_uint8(hu + 10, (0, 100)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: to_uint8(np.zeros(2), "soft"), "unknown window"),
        (lambda: to_uint8(np.zeros(2), (0, 0)), "positive width"),
        (lambda: to_uint8(np.array([np.nan]), "lung"), "NaN"),
        (lambda: to_channels(np.zeros((2, 2)), ["lung", "bone"]), "one window or three"),
        (lambda: to_channels(np.zeros(4), "lung"), "shape"),
        (lambda: select_slices(np.zeros((2, 2, 2)), "middle"), "unknown slice rule"),
        (lambda: select_slices(np.zeros((2, 2, 2)), "every", step=0), "at least 1"),
    ],
)
def test_bad_windows_and_rules_are_one_line_data_errors(call, message):
    with pytest.raises(DataError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


def chest_like(slices=10, size=40, lung_slices=range(3, 7)):
    """Air around a soft-tissue body; the slices in ``lung_slices`` hold two lung fields."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:size, 0:size]
    body = (y - size / 2) ** 2 + (x - size / 2) ** 2 <= (0.45 * size) ** 2
    lungs = body & ((np.abs(x - size / 2) > 3) & (np.abs(y - size / 2) < 0.3 * size))
    volume = np.where(body, 40.0, -1000.0)[None].repeat(slices, axis=0)
    for k in lung_slices:
        volume[k][lungs] = -850.0
    volume += rng.normal(0, 10, volume.shape)
    volume[-1] = -1000.0  # a slice outside the body: no field of view at all
    return volume.astype(np.float32)


def test_lung_rule_picks_the_slices_with_lung():
    volume = chest_like()
    shares = lung_shares(volume)
    assert all(shares[k] > 0.3 for k in range(3, 7))
    assert all(shares[k] < 0.01 for k in (0, 1, 2, 7, 8, 9))
    assert select_slices(volume, "lung").tolist() == [3, 4, 5, 6]


def test_lung_rule_on_a_volume_without_lung_selects_nothing():
    assert select_slices(chest_like(lung_slices=()), "lung").size == 0


def test_lung_rule_threshold_is_the_share_of_the_field_of_view():
    # 40 body pixels, 4 of them lung (share 0.1), the rest air that is not counted
    image = np.full((10, 10), -1024.0, np.float32)
    image.flat[:40] = 30.0
    image.flat[:4] = -700.0
    volume = np.stack([image, np.where(image == -700.0, 30.0, image)])
    assert lung_shares(volume).tolist() == pytest.approx([0.1, 0.0])
    assert select_slices(volume, "lung", min_lung_share=LUNG_MIN_SHARE).tolist() == [0]
    assert select_slices(volume, "lung", min_lung_share=0.11).tolist() == []


def test_all_and_every_kth():
    volume = np.zeros((7, 2, 2), np.float32)
    assert select_slices(volume).tolist() == list(range(7))
    assert select_slices(volume, "every", step=3).tolist() == [0, 3, 6]
