"""NIfTI reading: HU scaling, the DICOM layout found from the affine, and one-line refusals."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest
from ctframe_ct_volumes.nifti import read_nifti

from ctframe.api import DataError

# A volume in the layout the DICOM reader gives: (slices, rows, cols) with distinct values everywhere.
EXPECTED = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000
SPACING = (2.5, 0.75, 0.5)  # slice, row, column


def _standard_image() -> nib.Nifti1Image:
    """EXPECTED stored as a scanner-style NIfTI: voxel axes (column, row, slice), x and y flipped to RAS."""
    data = EXPECTED.transpose(2, 1, 0)
    affine = np.diag([-SPACING[2], -SPACING[1], SPACING[0], 1.0])
    return nib.Nifti1Image(data, affine)


def test_scaling_and_layout(tmp_path):
    nib.save(_standard_image(), tmp_path / "ct.nii")
    # nibabel picks its own scaling on save, so scl_slope and scl_inter (bytes 112-119) are set afterwards.
    raw = bytearray((tmp_path / "ct.nii").read_bytes())
    raw[112:120] = struct.pack("<ff", 2.0, -24.0)
    (tmp_path / "ct.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    volume = read_nifti(tmp_path / "ct.nii.gz")
    assert volume.hu.dtype == np.float32
    np.testing.assert_array_equal(volume.hu, EXPECTED * 2.0 - 24.0)
    assert volume.spacing == SPACING


@pytest.mark.parametrize("flip", [0, 1, 2])
def test_flips_and_transposes_come_from_the_affine(tmp_path, flip):
    standard = _standard_image()
    # Reverse one voxel axis and move the slice axis first; the affine is changed to match.
    data = np.flip(standard.get_fdata(), axis=flip)
    flip_matrix = np.eye(4)
    flip_matrix[flip, flip] = -1
    flip_matrix[flip, 3] = data.shape[flip] - 1
    affine = standard.affine @ flip_matrix
    swap = np.eye(4)[[2, 0, 1, 3]]  # new voxel (k, i, j) -> old (i, j, k)
    image = nib.Nifti1Image(data.transpose(2, 0, 1).astype(np.int16), affine @ swap.T)
    nib.save(image, tmp_path / "moved.nii")
    volume = read_nifti(tmp_path / "moved.nii")
    np.testing.assert_array_equal(volume.hu, EXPECTED)
    assert volume.spacing == pytest.approx(SPACING)


def test_a_4d_volume_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.int16), np.eye(4)), tmp_path / "4d.nii.gz")
    with pytest.raises(DataError, match=r"4D NIfTI volume \(4, 4, 3, 2\)") as error:
        read_nifti(tmp_path / "4d.nii.gz")
    assert "\n" not in str(error.value)


def test_a_broken_header_is_refused_in_one_line(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(b"\x00" * 100))
    with pytest.raises(DataError, match="not a readable NIfTI file") as error:
        read_nifti(broken)
    assert "\n" not in str(error.value)
    nib.save(_standard_image(), tmp_path / "cut.nii")
    (tmp_path / "cut.nii").write_bytes((tmp_path / "cut.nii").read_bytes()[:400])
    with pytest.raises(DataError, match="cut.nii") as error:
        read_nifti(tmp_path / "cut.nii")
    assert "\n" not in str(error.value)
