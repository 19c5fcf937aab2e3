"""Sequence grouping on generated scan series: thumbnails, scan order and the recovered runs."""

from __future__ import annotations

import numpy as np
import pytest
from ctframe_folder_split.leakage import DEFAULT_LEVEL
from ctframe_folder_split.sequence import (
    DEFAULT_GROUP_THRESHOLD,
    consecutive_similarities,
    file_number,
    group_linked,
    group_sequences,
    near_copy_pairs,
    scan_order,
    thumbnail,
)

from ctframe.base.errors import DataError, RecipeError
from tests.conftest import REPO

SIDE = 48
# Pixel correlation (full resolution, computed without the code under test) that a run's first slice
# must stay under against the previous run's last slice: the "abrupt change" between series.
ABRUPT = 0.4


def _render(centres: np.ndarray, widths: np.ndarray, signs: np.ndarray, body: np.ndarray, side: int):
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    inside = (((yy - body[0]) / body[2]) ** 2 + ((xx - body[1]) / body[3]) ** 2 <= 1).astype(np.float32)
    field = np.zeros((side, side), dtype=np.float32)
    for (cy, cx), width, sign in zip(centres, widths, signs, strict=True):
        field += sign * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width * width))
    grey = 30 + inside * (40 + 110 * field)
    return np.clip(grey, 0, 255).astype(np.uint8)


def make_run(rng: np.random.Generator, length: int, side: int = SIDE) -> list[np.ndarray]:
    """One scan series: a CT-like body outline with blob texture that drifts a little per slice."""
    body = np.r_[rng.uniform(0.4, 0.6, 2), rng.uniform(0.3, 0.45, 2)]
    centres = rng.uniform(0.2, 0.8, (20, 2))
    widths = rng.uniform(0.05, 0.1, 20)
    signs = rng.choice([-1.0, 1.0], 20)
    step = rng.normal(0, 0.012, (20, 2))
    slices = []
    for _ in range(length):
        grey = _render(centres, widths, signs, body, side)
        slices.append(np.repeat(grey[:, :, None], 3, axis=2))
        centres = centres + step + rng.normal(0, 0.006, centres.shape)
    return slices


def make_series(rng: np.random.Generator, n_runs: int, min_len: int = 3, max_len: int = 12):
    """Consecutive runs of one class, each abruptly different from the one before.

    Returns (images in scan order, run index per image)."""
    images: list[np.ndarray] = []
    runs: list[int] = []
    while len(set(runs)) < n_runs:
        run = make_run(rng, int(rng.integers(min_len, max_len + 1)))
        if images and np.corrcoef(images[-1][:, :, 0].ravel(), run[0][:, :, 0].ravel())[0, 1] >= ABRUPT:
            continue  # not an abrupt change; draw another series
        runs += [len(set(runs))] * len(run)
        images += run
    return images, runs


def _named(prefix: str, count: int, rng: np.random.Generator, start: int = 1) -> tuple[list[str], np.ndarray]:
    """File names numbered in scan order, and a shuffled presentation order (as a folder listing)."""
    names = [f"{prefix} ({start + k}).png" for k in range(count)]
    return names, rng.permutation(count)


# --- thumbnail -----------------------------------------------------------------------------------


def test_thumbnail_is_centred_unit_vector():
    rng = np.random.default_rng(1)
    image = make_run(rng, 1)[0]
    vector = thumbnail(image)
    assert vector.dtype == np.float32 and vector.shape == (32 * 32,)
    assert abs(float(vector.mean())) < 1e-6
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    assert thumbnail(image, size=16).shape == (256,)


def test_thumbnail_dot_is_pearson_correlation_and_ignores_brightness_contrast():
    rng = np.random.default_rng(2)
    first, _, third = make_run(rng, 3, side=64)

    def block_means(rgb: np.ndarray) -> np.ndarray:
        # Independent reference: BT.601 grey, then 2 x 2 block means (64 -> 32 px is exact area averaging).
        grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return grey.reshape(32, 2, 32, 2).mean(axis=(1, 3)).ravel()

    a, b = thumbnail(first), thumbnail(third)
    expected = np.corrcoef(block_means(first), block_means(third))[0, 1]
    assert float(a @ b) == pytest.approx(expected, abs=1e-5)
    assert 0.5 < expected < 0.999  # neighbouring-but-one slices: similar, not identical
    darker = (first.astype(np.float32) * 0.5 + 20).astype(np.uint8)
    assert float(thumbnail(darker) @ a) > 0.999


def test_thumbnail_greyscale_and_rgb_agree_and_size_barely_matters():
    rng = np.random.default_rng(3)
    body = np.array([0.5, 0.5, 0.4, 0.35])
    centres, widths = rng.uniform(0.2, 0.8, (20, 2)), rng.uniform(0.05, 0.1, 20)
    signs = rng.choice([-1.0, 1.0], 20)
    grey = _render(centres, widths, signs, body, 64)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_allclose(thumbnail(grey), thumbnail(rgb), atol=1e-5)
    np.testing.assert_allclose(thumbnail(grey[:, :, None]), thumbnail(rgb), atol=1e-5)
    # The same scene rendered at another resolution stays highly correlated.
    larger = _render(centres, widths, signs, body, 150)
    assert float(thumbnail(larger) @ thumbnail(grey)) > 0.98


def test_thumbnail_antialiases_fine_detail():
    # A one-pixel checkerboard averages to flat grey; point sampling would keep a full-contrast pattern.
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    assert not thumbnail(checker).any()


def test_constant_images_give_zero_vectors_and_no_nan():
    for image in (np.zeros((20, 30, 3), np.uint8), np.full((17, 5), 200, np.uint8)):
        vector = thumbnail(image)
        assert not vector.any() and np.isfinite(vector).all()
    rng = np.random.default_rng(4)
    assert float(thumbnail(np.zeros((8, 8), np.uint8)) @ thumbnail(make_run(rng, 1)[0])) == 0.0


@pytest.mark.parametrize("shape", [(10, 10, 4), (10, 10, 2), (10,), (0, 10, 3)])
def test_thumbnail_rejects_other_shapes(shape):
    with pytest.raises(ValueError):
        thumbnail(np.zeros(shape, np.uint8))


# --- scan order ----------------------------------------------------------------------------------


def test_natural_order_compares_numbers_as_numbers():
    names = ["Covid (10).png", "Covid (9).png", "Covid (100).png", "covid (2).png", "Covid (1).png"]
    ordered = sorted(names, key=file_number)
    assert ordered == ["Covid (1).png", "covid (2).png", "Covid (9).png", "Covid (10).png", "Covid (100).png"]
    assert [names[i] for i in scan_order(names)] == ordered
    # Leading zeros compare equal as numbers and fall back to the name, so the order is total.
    padded = sorted(["a 010.png", "a 10.png", "a 9.png"], key=file_number)
    assert padded == ["a 9.png", "a 010.png", "a 10.png"]


def test_pattern_picks_the_slice_number():
    names = ["p9_slice_3.png", "p10_slice_2.png", "p10_slice_1.png"]
    # Natural order sorts by patient first; the pattern orders by slice number.
    assert sorted(names, key=file_number) == ["p9_slice_3.png", "p10_slice_1.png", "p10_slice_2.png"]
    by_slice = sorted(names, key=lambda name: file_number(name, r"slice_(\d+)"))
    assert by_slice == ["p10_slice_1.png", "p10_slice_2.png", "p9_slice_3.png"]
    # Without a group the whole match is the number; the dataset's default takes the last number.
    assert file_number("x_12.png", r"\d+")[0] == 12
    assert file_number("scan2 (10).png", r"(\d+)(?!.*\d)")[0] == 10


def test_pattern_errors_are_one_line_and_name_the_problem():
    with pytest.raises(DataError, match="does not match file 'no digits.png'"):
        file_number("no digits.png", r"(\d+)")
    with pytest.raises(DataError, match="not a number"):
        file_number("slice_ab.png", r"slice_(\w+)\.")
    with pytest.raises(RecipeError, match="not a valid regular expression"):
        file_number("a (1).png", r"(\d+")


# --- grouping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_recovered_equal_the_runs(seed):
    rng = np.random.default_rng(seed)
    images, runs = make_series(rng, n_runs=12)
    names, listing = _named("Covid", len(images), rng)
    vectors = np.stack([thumbnail(image) for image in images])
    # Present the files in a shuffled listing order: grouping must not depend on it.
    groups = group_sequences([names[i] for i in listing], vectors[listing])
    assert groups == [runs[i] for i in listing]
    # Every consecutive pair inside a run is far above the default, every boundary far below it.
    order, similarity = consecutive_similarities(names, vectors)
    same_run = np.array([runs[a] == runs[b] for a, b in zip(order[1:], order[:-1], strict=True)])
    assert similarity[same_run].min() > DEFAULT_GROUP_THRESHOLD + 0.2
    assert similarity[~same_run].max() < DEFAULT_GROUP_THRESHOLD


def test_threshold_extremes_give_one_group_or_one_per_file():
    rng = np.random.default_rng(5)
    images, _ = make_series(rng, n_runs=3)
    names, _ = _named("Non-Covid", len(images), rng)
    vectors = np.stack([thumbnail(image) for image in images])
    assert set(group_sequences(names, vectors, threshold=-1.0)) == {0}
    assert group_sequences(names, vectors, threshold=1.0) == list(range(len(images)))
    with pytest.raises(ValueError, match="threshold"):
        group_sequences(names, vectors, threshold=1.5)


def test_groups_are_numbered_in_scan_order_with_a_pattern():
    rng = np.random.default_rng(6)
    first, second = make_run(rng, 3), make_run(rng, 2)
    # Natural order would interleave these names; the pattern puts them in scan order.
    names = ["b_s1.png", "a_s2.png", "c_s3.png", "a_s4.png", "b_s5.png"]
    vectors = np.stack([thumbnail(image) for image in first + second])
    assert group_sequences(names, vectors, pattern=r"_s(\d+)") == [0, 0, 0, 1, 1]


def test_one_image_class_empty_class_and_constant_images():
    rng = np.random.default_rng(7)
    assert group_sequences(["Covid (1).png"], thumbnail(make_run(rng, 1)[0])[None]) == [0]
    assert group_sequences([], np.zeros((0, 1024), np.float32)) == []
    # Constant images (zero vectors) never join a neighbour; the dataset merges exact copies itself.
    blank = thumbnail(np.zeros((30, 30), np.uint8))
    run = [thumbnail(image) for image in make_run(rng, 2)]
    names = [f"s ({k}).png" for k in range(1, 6)]
    assert group_sequences(names, np.stack([blank, blank, *run, blank])) == [0, 1, 2, 2, 3]


def test_mismatched_names_and_vectors_are_rejected():
    with pytest.raises(ValueError, match="one thumbnail vector per name"):
        group_sequences(["a (1).png", "a (2).png"], np.zeros((3, 16), np.float32))


def test_thumbnail_rejects_non_finite_values():
    image = np.ones((8, 8), np.float32)
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        thumbnail(image)


def test_grouped_recipe_is_the_study_plus_sequence_grouping():
    import tomllib

    from ctframe_folder_split.options import FolderSplitOptions

    recipes = REPO / "recipes"
    study = tomllib.loads((recipes / "covid_ct.toml").read_text(encoding="utf-8"))
    grouped = tomllib.loads((recipes / "covid_ct_grouped.toml").read_text(encoding="utf-8"))
    grouping_keys = {
        "group_by",
        "sequence_pattern",
        "group_threshold",
        "leakage_threshold",
        "link_near_copies",
        "max_group_share",
    }
    assert {k: v for k, v in grouped["dataset"].items() if k not in grouping_keys} == study["dataset"]
    assert {k: v for k, v in grouped.items() if k != "dataset"} == {
        k: v for k, v in study.items() if k != "dataset"
    }
    assert grouped["dataset"]["group_by"] == "sequence"
    assert grouped["dataset"]["link_near_copies"] is True  # runs joined by near-copies: docs/grouping.md
    assert grouped["dataset"]["group_threshold"] == DEFAULT_GROUP_THRESHOLD
    options = {k: v for k, v in grouped["dataset"].items() if k != "component"}
    parsed = FolderSplitOptions(**options)  # every key is a real option of the dataset
    assert file_number("Covid (123).png", parsed.sequence_pattern)[0] == 123


# --- near-copy links -----------------------------------------------------------------------------


def plant_copies(rng: np.random.Generator, images: list[np.ndarray], runs: list[int], count: int):
    """Append near-copies (+-2 grey levels of noise) of ``count`` slices from different runs, after the
    last file: far from their originals in the numbering, and one run apart from each other.

    Returns (images, run per image, index of the original per appended copy)."""
    run_ids = rng.choice(sorted(set(runs)), size=count, replace=False)
    originals = [int(rng.choice([k for k, run in enumerate(runs) if run == r])) for r in run_ids]
    copies = [
        np.clip(images[k].astype(np.int16) + rng.integers(-2, 3, images[k].shape), 0, 255).astype(np.uint8)
        for k in originals
    ]
    return images + copies, runs + [runs[k] for k in originals], originals


def test_near_copies_far_apart_split_by_runs_and_joined_by_links():
    rng = np.random.default_rng(21)
    images, runs = make_series(rng, n_runs=12)
    first_copy = len(images)
    images, runs, originals = plant_copies(rng, images, runs, count=6)
    names, listing = _named("Covid", len(images), rng)
    vectors = np.stack([thumbnail(image) for image in images])
    sequence_only = group_sequences(names, vectors)
    for offset, original in enumerate(originals):
        assert float(vectors[first_copy + offset] @ vectors[original]) >= 0.99
        assert sequence_only[first_copy + offset] != sequence_only[original]  # the copy leaks
    # Listing order must not matter; groups are numbered by their first file in scan order.
    linked = group_linked([names[i] for i in listing], vectors[listing], level=DEFAULT_LEVEL)
    groups = np.empty(len(images), dtype=int)
    groups[listing] = linked.groups
    assert all(groups[first_copy + k] == groups[o] for k, o in enumerate(originals))
    # Links only ever join: every run sits inside one group, and the copies closed run boundaries.
    assert all(len(set(groups[np.asarray(runs) == run])) == 1 for run in set(runs))
    assert linked.runs == max(sequence_only) + 1 and linked.runs_joined >= len(originals)
    assert linked.count == linked.runs - linked.runs_joined and groups[0] == 0
    # Without a level, the links are the runs alone.
    assert group_linked(names, vectors).groups == sequence_only


def test_every_pair_at_the_level_shares_a_group():
    rng = np.random.default_rng(22)
    base = rng.normal(size=(60, 64))
    vectors = np.concatenate([base, base[:20] + 0.1 * rng.normal(size=(20, 64))])
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    names = [f"x ({k}).png" for k in range(len(vectors))]
    similarity = vectors @ vectors.T
    for level in (0.5, 0.9, 0.99):
        groups = np.asarray(group_linked(names, vectors, threshold=1.0, level=level).groups)
        rows, columns = np.nonzero(similarity >= level)
        assert (groups[rows] == groups[columns]).all()
    pairs = near_copy_pairs(vectors, 0.9, batch=7)  # blocks of 7 rows find the same pairs
    rows, columns = np.nonzero(np.triu(similarity >= 0.9, k=1))
    assert sorted(map(tuple, pairs.tolist())) == sorted(zip(rows.tolist(), columns.tolist(), strict=True))


def test_linked_grouping_edge_cases():
    empty = group_linked([], np.zeros((0, 16), np.float32), level=0.95)
    assert empty.groups == [] and empty.count == 0
    one = group_linked(["a (1).png"], np.ones((1, 4), np.float32) / 2, level=0.95)
    assert one.groups == [0] and one.runs == 1
    with pytest.raises(ValueError, match="level"):
        group_linked(["a (1).png"], np.ones((1, 4), np.float32), level=2.0)
    with pytest.raises(ValueError, match="one thumbnail vector per name"):
        group_linked(["a (1).png", "a (2).png"], np.zeros((3, 16), np.float32), level=0.95)
    with pytest.raises(ValueError, match="batch"):
        near_copy_pairs(np.zeros((2, 4), np.float32), 0.9, batch=0)
