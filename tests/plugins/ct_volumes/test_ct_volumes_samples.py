"""The shared real CT sample (skipped, saying so, when ../shared/data is absent)."""

from __future__ import annotations

import random
import shutil

import numpy as np
from ctframe_ct_volumes import discover as disc
from ctframe_ct_volumes.nifti import read_nifti


def test_the_dicom_series_and_its_nifti_are_voxel_identical(sample):
    folder = sample / "cip-copdgene-ct64"
    (series,) = disc.discover(folder / "series").series
    dicom = series.volume()
    nifti = read_nifti(folder / "series.nii.gz")
    assert dicom.shape == nifti.hu.shape == (79, 64, 64)
    np.testing.assert_array_equal(dicom, nifti.hu)
    np.testing.assert_allclose(series.spacing, nifti.spacing, atol=1e-3)


def test_the_j2k_series_decodes_and_groups_by_fallback(sample):
    found = disc.discover(sample / "totalsegmentator")
    (series,) = found.series
    assert series.grouping_fallback and series.patient_id_source == "fallback"
    assert series.slice_count == 20 and series.spacing == (2.0, 0.9765625, 0.9765625)
    assert series.technical["slice_thickness"] == "3"  # 3 mm slices 2 mm apart: overlap is kept
    volume = series.volume()
    assert volume.shape == (20, 512, 512) and volume.dtype == np.float32
    assert volume.min() >= -1024 and volume.max() > 1000  # rescaled to HU
    assert len(found.nifti) == 2


def test_lungmask_slices_without_modality_are_accepted(sample):
    found = disc.discover(sample / "lungmask-2-slices")
    (series,) = found.series
    assert series.slice_count == 2 and series.patient_id_source == "StudyInstanceUID"
    assert found.skipped == {disc.NOT_MEDICAL: 1}  # the licence file


def test_the_whole_sample_is_found(sample):
    found = disc.discover(sample)
    assert len(found.series) == 10 and sum(s.slice_count for s in found.series) == 79 + 2 + 20 + 2 + 3 + 1 + 4
    assert set(found.skipped) == {disc.NOT_MEDICAL}
    padded = next(s for s in found.series if s.patient_id == "COPD").volume()
    assert padded.min() == -3024  # padding outside the field of view stays as stored, in HU


def test_order_ignores_file_names(sample, tmp_path):
    source = sample / "cip-copdgene-ct64" / "series"
    expected = disc.discover(source).series[0].volume()
    paths = sorted(source.glob("*.dcm"))
    names = [f"{n:04d}" for n in range(len(paths))]  # no extension, unrelated to the slice order
    random.Random(3).shuffle(names)
    for path, name in zip(paths, names, strict=True):
        shutil.copy(path, tmp_path / name)
    (series,) = disc.discover(tmp_path).series
    assert [s.path.name for s in series.slices] != sorted(names)
    np.testing.assert_array_equal(series.volume(), expected)
