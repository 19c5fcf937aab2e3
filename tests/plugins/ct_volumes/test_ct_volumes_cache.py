"""The slice cache: later builds decode nothing, an edited scan file invalidates only its series, damaged
entries are rebuilt, and the entries hold no identifying value. Images are uint8, compared exactly."""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from ctframe_ct_volumes import dataset as dataset_module
from ctframe_ct_volumes.cache import SliceCache, entry_key
from ctframe_ct_volumes.factory import build, check
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV
from ctframe_ct_volumes.series import Series, quiet_pydicom
from ctframe_ct_volumes.synthetic import write_synthetic_set
from ctframe_ct_volumes.volumes import Volume

from ctframe import BuildContext, DataError

KEY = "0123456789abcdef" * 4
MARKER = "SECRETC"
PATIENTS, SLICES = 6, 4
ENTRY_NAME = re.compile(r"^[0-9a-f]{64}(\.idx)?\.npy$")
LOGGER = "test-ct-volumes-cache"


@pytest.fixture
def ct_set(tmp_path) -> Path:
    """6 patients (3 per class) x 4 slices x 16 px; every identifying tag holds MARKER."""
    root = tmp_path / "set"
    write_synthetic_set(root, patients=PATIENTS, slices=SLICES, size=(16, 16), marker=MARKER)
    return root


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The series ids whose voxels are read, one entry per read."""
    calls: list[str] = []
    original = Series.volume

    def counted(self: Series):
        calls.append(self.series_id)
        return original(self)

    monkeypatch.setattr(Series, "volume", counted)
    return calls


def options(root: Path, cache_dir: Path | None, **changes) -> CtVolumesOptions:
    values = {
        "root": root,
        "labels": root / "labels.csv",
        "classes": ["normal", "nodule"],
        "positive_class": "nodule",
        "image_size": 16,
        "cache_dir": cache_dir,
        **changes,
    }
    return CtVolumesOptions.model_validate(values, context={"base_dir": root})


def context(root: Path) -> BuildContext:
    return BuildContext(seed=0, device="cpu", recipe_dir=root, logger=logging.getLogger(LOGGER))


def items(data) -> dict[str, tuple[torch.Tensor, int, str]]:
    """sample id -> (image, label, split) over the three splits."""
    found = {}
    for split in ("train", "val", "test"):
        dataset = getattr(data, split)
        for index in range(len(dataset)):
            image, label, sample = dataset[index]
            found[sample] = (image, label, split)
    return found


def same_images(first, second) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[s][0], second[s][0]) for s in first)


def test_cached_builds_give_what_uncached_ones_give_and_decode_nothing_the_second_time(
    ct_set, tmp_path, decodes
):
    plain = build(options(ct_set, None, cache=False), context(ct_set))
    assert len(decodes) == PATIENTS and not (tmp_path / "cache").exists()
    cold = build(options(ct_set, tmp_path / "cache"), context(ct_set))
    assert len(decodes) == 2 * PATIENTS
    warm = build(options(ct_set, tmp_path / "cache"), context(ct_set))
    assert len(decodes) == 2 * PATIENTS, "the warm build decoded a series"
    reference = items(plain)

    def labels_and_splits(found: dict) -> list:
        return [(sample, label, split) for sample, (_, label, split) in found.items()]

    for data in (cold, warm):
        assert labels_and_splits(items(data)) == labels_and_splits(reference)
        assert same_images(items(data), reference)
        assert (data.groups, data.files, data.summary) == (plain.groups, plain.files, plain.summary)
        image = data.test[0][0]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and image.is_contiguous()
    assert all(isinstance(images, Path) for images in warm.train.images)  # no pixels held in memory
    names = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert len(names) == 2 * PATIENTS and all(ENTRY_NAME.fullmatch(name) for name in names)


def test_the_default_folder_comes_from_the_environment(ct_set, tmp_path, monkeypatch, decodes):
    monkeypatch.setenv("CTFRAME_CACHE_DIR", str(tmp_path / "env"))
    build(options(ct_set, None), context(ct_set))
    assert len(list((tmp_path / "env" / "ct_volumes").glob("*.idx.npy"))) == PATIENTS
    monkeypatch.delenv("CTFRAME_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert options(ct_set, None).cache_folder() == tmp_path / "xdg" / "ctframe" / "ct_volumes"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert options(ct_set, None).cache_folder() == tmp_path / "home" / ".cache" / "ctframe" / "ct_volumes"


def _rewrite_with_other_pixels(path: Path) -> None:
    before = path.stat().st_mtime_ns
    with quiet_pydicom():  # the marker makes its UIDs invalid
        ds = pydicom.dcmread(path)
        ds.PixelData = (ds.pixel_array.astype(np.uint16) // 2 + 7).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
    os.utime(path, ns=(before + 5 * 10**9, before + 5 * 10**9))  # a new mtime even on coarse clocks


def test_an_edited_slice_file_invalidates_only_its_series(ct_set, tmp_path, decodes):
    cache = tmp_path / "cache"
    before = items(build(options(ct_set, cache), context(ct_set)))
    _rewrite_with_other_pixels(next((ct_set / "case001").glob("*.dcm")))
    decodes.clear()
    after = items(build(options(ct_set, cache), context(ct_set)))
    assert len(decodes) == 1, f"{len(decodes)} series decoded again, expected the edited one"
    changed = {s.split("/")[0] for s in before if not torch.equal(before[s][0], after[s][0])}
    assert len(changed) == 1  # the edited series' images are new, every other series' the same
    assert len(list(cache.glob("*.idx.npy"))) == PATIENTS + 1  # the old entry stays, never used again


def _damage_truncate(images: Path, indices: Path) -> None:
    images.write_bytes(images.read_bytes()[:-10])


def _damage_garbage(images: Path, indices: Path) -> None:
    images.write_bytes(b"not a numpy file at all" * 10)


def _damage_indices(images: Path, indices: Path) -> None:
    np.save(indices, np.arange(SLICES + 1, dtype=np.int32))  # disagrees with the images


def _damage_half_written(images: Path, indices: Path) -> None:
    images.unlink()  # a crash after the indices and before the images


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_garbage, _damage_indices, _damage_half_written])
def test_a_damaged_entry_is_logged_and_rebuilt(ct_set, tmp_path, decodes, caplog, damage):
    cache = tmp_path / "cache"
    before = items(build(options(ct_set, cache), context(ct_set)))
    indices = sorted(cache.glob("*.idx.npy"))[0]
    damage(cache / indices.name.replace(".idx.npy", ".npy"), indices)
    decodes.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        after = items(build(options(ct_set, cache), context(ct_set)))
    assert len(decodes) == 1 and same_images(before, after)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0] and indices.name[:64] in warnings[0]
    assert str(ct_set) not in caplog.text and MARKER not in caplog.text and "case0" not in caplog.text
    assert f"{PATIENTS - 1} series read back, 1 decoded and written" in caplog.text
    decodes.clear()
    build(options(ct_set, cache), context(ct_set))
    assert decodes == []  # the rebuilt entry is used


def test_the_cache_holds_no_identifying_value(ct_set, tmp_path):
    cache = tmp_path / "cache"
    build(options(ct_set, cache, windows=["lung", "mediastinum", "bone"]), context(ct_set))
    patients = [line.split(",")[0] for line in (ct_set / "labels.csv").read_text().splitlines()[1:]]
    needles = [MARKER, *patients, "case0", str(ct_set), str(tmp_path)]
    for file in cache.rglob("*"):
        held = (file.name.encode() + file.read_bytes()).lower()
        assert not [needle for needle in needles if needle.lower().encode() in held], file.name


def test_an_unwritable_cache_folder_is_one_line(ct_set, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = options(ct_set, blocker / "cache")  # a folder cannot be made inside a file, even by root
    for step in (check, build):
        with pytest.raises(DataError, match="cannot write the slice cache") as error:
            step(bad, context(ct_set))
        message = str(error.value)
        assert "\n" not in message and "dataset.cache_dir" in message and "cache = false" in message
    assert len(items(build(options(ct_set, blocker / "cache", cache=False), context(ct_set)))) == 24


def test_the_dataset_pickles_without_open_maps_and_bounds_them(ct_set, tmp_path, monkeypatch):
    data = build(options(ct_set, tmp_path / "cache"), context(ct_set))
    monkeypatch.setattr(dataset_module, "OPEN_MAPS", 2)
    expected = [data.train[index][0] for index in range(len(data.train))]
    assert 0 < len(data.train._maps) <= 2
    copy = pickle.loads(pickle.dumps(data.train))
    assert len(copy._maps) == 0 and len(pickle.dumps(data.train)) < 4096  # paths, not pixels
    assert all(torch.equal(copy[index][0], image) for index, image in enumerate(expected))
    loader = torch.utils.data.DataLoader(data.train, batch_size=4, num_workers=1)
    batches = torch.cat([images for images, _, _ in loader])
    assert torch.equal(batches, torch.stack(expected))


def test_a_cache_cleared_during_the_run_is_one_line(ct_set, tmp_path):
    data = build(options(ct_set, tmp_path / "cache"), context(ct_set))
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(DataError, match="became unreadable during the run") as error:
        data.test[0]
    assert "\n" not in str(error.value) and str(ct_set) not in str(error.value)


def test_an_empty_selection_is_cached_too(tmp_path):
    root = tmp_path / "scan"
    root.mkdir()
    (root / "ct.nii").write_bytes(b"stands for a scan")  # only its size and mtime are looked at
    volume = Volume("se-x", "p-x", {}, load=lambda: np.zeros((3, 4, 4)), sources=(root / "ct.nii",))
    cache = SliceCache(options(root, tmp_path / "cache"), logging.getLogger(LOGGER))
    calls = []

    def decode(volume: Volume):
        calls.append(volume.name)
        return [], []

    assert cache.series(volume, decode)[0] == [] and cache.series(volume, decode)[0] == []
    assert calls == ["se-x"] and (cache.read, cache.written) == (1, 1)


def test_the_key_follows_every_input(tmp_path):
    source = tmp_path / "ct.nii"
    source.write_bytes(b"x" * 10)
    base = entry_key([source], ["lung"] * 3, "all", 1, 16)
    assert base is not None and re.fullmatch(r"[0-9a-f]{64}", base)
    variants = [
        entry_key([source], ["bone"] * 3, "all", 1, 16),
        entry_key([source], ["lung"] * 3, "every", 1, 16),
        entry_key([source], ["lung"] * 3, "all", 2, 16),
        entry_key([source], ["lung"] * 3, "all", 1, 24),
        entry_key([source, source], ["lung"] * 3, "all", 1, 16),
    ]
    source.write_bytes(b"x" * 11)
    variants.append(entry_key([source], ["lung"] * 3, "all", 1, 16))
    assert len({base, *variants}) == len(variants) + 1
    assert entry_key([tmp_path / "gone.nii"], ["lung"] * 3, "all", 1, 16) is None
