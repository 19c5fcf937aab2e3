"""Read a NIfTI CT volume in HU into the layout the DICOM reader gives for an axial series.

The DICOM reader returns (slices, rows, cols) with slices ascending along the slice normal. For the
usual axial orientation (ImageOrientationPatient 1,0,0,0,1,0) that is: columns run towards the
patient's left (+x in DICOM's LPS), rows towards posterior (+y), slices towards superior (+z).
A NIfTI affine is in RAS, so the voxel axes are matched to L, P, S from the affine itself
(nibabel's orientation tools find the flips and the axis order), never assumed for a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

from ctframe.api import DataError

# Target axis codes in nibabel's terms (each letter is where the voxel index increases towards),
# for the voxel axes (column, row, slice) of an axial DICOM series.
_DICOM_AXES = ("L", "P", "S")


@dataclass
class NiftiVolume:
    """A NIfTI volume in HU, (slices, rows, cols), and its spacing in mm in that order."""

    path: Path
    hu: np.ndarray
    spacing: tuple[float, float, float]


def _load(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    try:
        image = nib.load(str(path))
        image.header.get_data_shape()
    except Exception as error:  # nibabel raises many kinds of errors on damaged files
        raise DataError(f"{path} is not a readable NIfTI file: {str(error).splitlines()[0]}") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(f"{path} is not a NIfTI image ({type(image).__name__})")
    return image


def read_nifti(path: str | Path) -> NiftiVolume:
    """The NIfTI file at ``path`` in HU (scl_slope/scl_inter applied), float32, (slices, rows, cols).

    DataError (one line) for a broken header, unreadable data or a volume that is not 3D.
    """
    path = Path(path)
    image = _load(path)
    shape = image.shape
    if len(shape) < 3 or any(size != 1 for size in shape[3:]):
        raise DataError(f"{path} is a {len(shape)}D NIfTI volume {tuple(shape)}; a 3D CT volume is needed")
    affine = image.affine
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path} has no usable affine (voxel-to-world transform)")
    try:
        stored = np.asanyarray(image.dataobj.get_unscaled()).reshape(shape[:3])
    except Exception as error:  # truncated or corrupt data block
        raise DataError(f"{path}: cannot read the voxel data: {str(error).splitlines()[0]}") from error
    # nibabel moves scl_slope/scl_inter from the loaded header to the data proxy (1 and 0 when unset).
    slope, intercept = float(image.dataobj.slope), float(image.dataobj.inter)
    hu = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)

    transform = orientations.ornt_transform(
        orientations.io_orientation(affine), orientations.axcodes2ornt(_DICOM_AXES)
    )
    hu = orientations.apply_orientation(hu, transform)  # voxel axes now (column, row, slice)
    zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
    zooms = zooms[np.argsort(transform[:, 0])]  # zooms follow the axes to their new places
    return NiftiVolume(
        path=path,
        hu=np.ascontiguousarray(hu.transpose(2, 1, 0), dtype=np.float32),
        spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])),
    )
