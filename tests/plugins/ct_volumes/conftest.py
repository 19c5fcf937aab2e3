"""Helpers for the ct_volumes tests: the real sample and synthetic slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import SHARED_DATA

SAMPLE = SHARED_DATA / "ct-dicom-sample"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def sample() -> Path:
    """The shared real CT sample; the test is skipped, saying so, when it is absent."""
    if not SAMPLE.is_dir():
        pytest.skip(f"shared CT sample data not present at {SAMPLE}")
    return SAMPLE


def write_slice(path: Path, z: float = 0.0, *, series: str = "1.2.3.4", size: int = 8, **tags) -> Path:
    """An 8x8 (``size``) axial CT slice at height ``z``; ``tags`` override or add header fields
    (a value of None deletes the field). Stored values are 100*z + column, rescaled by -1024."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = tags.get("SOPClassUID", CT_IMAGE)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = "P1"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    ds.InstanceNumber = int(z) + 1
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    pixels = np.tile(np.arange(size, dtype=np.int16), (size, 1)) + np.int16(100 * z)
    ds.PixelData = pixels.tobytes()
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def make_slice():
    return write_slice
