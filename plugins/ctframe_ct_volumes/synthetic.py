"""A small synthetic CT set as DICOM files, for tests and demos: patients, one study and series each.

Each patient gets one series of ``slices`` axial slices (uncompressed, explicit VR little endian,
stored as unsigned 12-bit values with RescaleSlope 1 / RescaleIntercept -1024, so stored 0 is
-1024 HU): a soft-tissue body ellipse (about 40 HU) in air (-1000 HU) holding two lung fields (about
-850 HU). Patients of the second class also carry a dense blob (about 60 HU) in the right lung over the
middle slices, so a tiny model can learn the classes. Patients alternate between the classes.

Geometry is consistent: ImageOrientationPatient axial, ImagePositionPatient moving ``thickness`` mm
per InstanceNumber along z, PixelSpacing and SliceThickness set. File names are a shuffled numbering,
never the slice order, so a reader has to sort by geometry. With ``marker``, every tag of
pseudonym.IDENTIFYING_TAGS holds the marker (ids and UIDs add a suffix so they stay distinct), which
lets a test prove that no identifying value reaches an output; UIDs and dates holding it are then
invalid for their VR, as in badly anonymised real exports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctframe import DataError
from ctframe.api import write_text
from ctframe_ct_volumes.pseudonym import IDENTIFYING_TAGS

CLASSES = ("normal", "nodule")
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("patient_id", "label")
AIR_HU, TISSUE_HU, LUNG_HU, BLOB_HU = -1000.0, 40.0, -850.0, 60.0
INTERCEPT = -1024
MARKER_PATTERN = re.compile(r"[A-Z0-9_]{1,16}")  # valid in every text VR the tags use (CS, SH, PN, ...)
UID_ROOT = "2.25"  # UUID-derived UIDs need no registered root
ACQUISITION = {
    "Manufacturer": "ctframe",
    "ManufacturerModelName": "synthetic",
    "ConvolutionKernel": "B30f",
    "KVP": 120,
}
"""The technical fields every slice gets; ``acquisition`` may override these (and ContrastBolusAgent) per
class, e.g. to plant a scanner that gives the class away."""
SETTABLE = (*ACQUISITION, "ContrastBolusAgent")


@dataclass(frozen=True)
class SyntheticSet:
    """What write_synthetic_set wrote: the folder, the labels CSV and (patient id, class) per patient."""

    root: Path
    labels: Path
    patients: tuple[tuple[str, str], ...]


def _uid(*parts: object) -> str:
    """A deterministic, valid UID (2.25 + a decimal integer below 2**128) from ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16]
    return f"{UID_ROOT}.{int.from_bytes(digest, 'big')}"


def _hu_volume(rng: np.random.Generator, slices: int, size: tuple[int, int], blob: bool) -> np.ndarray:
    """(S, H, W) float32 HU: body, two lungs, noise, and a blob in the right lung when ``blob``."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    body = ((y - cy) / (0.42 * h)) ** 2 + ((x - cx) / (0.46 * w)) ** 2 <= 1
    lungs = np.zeros((h, w), bool)
    for side in (-1, 1):
        lungs |= ((y - cy) / (0.28 * h)) ** 2 + ((x - cx - side * 0.2 * w) / (0.13 * w)) ** 2 <= 1
    volume = np.empty((slices, h, w), np.float32)
    by, bx, radius = cy + rng.uniform(-0.1, 0.1) * h, cx - 0.2 * w, max(1.5, 0.09 * min(h, w))
    for k in range(slices):
        image = np.where(body, TISSUE_HU, AIR_HU).astype(np.float32)
        image[lungs & body] = LUNG_HU
        # the blob spans the middle half of the slices and is widest in the middle
        reach = 1 - abs(k - (slices - 1) / 2) / max(slices / 4, 1)
        if blob and reach > 0:
            image[(y - by) ** 2 + (x - bx) ** 2 <= (radius * (0.6 + 0.4 * reach)) ** 2] = BLOB_HU
        volume[k] = image + rng.normal(0, 15, (h, w)).astype(np.float32)
    return volume


def _identity(index: int, seed: int, marker: str | None) -> dict[str, str]:
    """Values of the identifying tags for one patient (UIDs of the slices are set per file)."""
    if marker is None:
        values = {name: "" for name in IDENTIFYING_TAGS}
        values.update(
            PatientName=f"Synthetic^Patient{index:03d}",
            PatientID=f"SYN{index:04d}",
            PatientBirthDate="19700101",
            PatientSex="O",
            StudyDate="20200101",
            SeriesDate="20200101",
            StudyInstanceUID=_uid(seed, index, "study"),
            SeriesInstanceUID=_uid(seed, index, "series"),
            FrameOfReferenceUID=_uid(seed, index, "frame"),
        )
        return values
    values = {name: marker for name in IDENTIFYING_TAGS}
    values.update(  # these group files into patients, studies and series: they must differ per patient
        PatientID=f"{marker}{index:04d}",
        StudyInstanceUID=f"{marker}.{index}.1",
        SeriesInstanceUID=f"{marker}.{index}.2",
        FrameOfReferenceUID=f"{marker}.{index}.3",
    )
    return values


def _slice_dataset(identity: dict[str, str], hu: np.ndarray, geometry: dict, sop_uid: str, technical: dict):
    """One CT image dataset (pydicom) holding ``hu`` and the patient's identifying values."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    for name, value in identity.items():
        setattr(ds, name, value)
    ds.SOPInstanceUID = sop_uid
    for name, value in technical.items():
        setattr(ds, name, value)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    for name, value in geometry.items():
        setattr(ds, name, value)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    stored = np.clip(np.rint(hu) - INTERCEPT, 0, 4095).astype("<u2")
    ds.PixelData = stored.tobytes()
    return ds


def _write_series(
    folder: Path, identity: dict, volume: np.ndarray, order: np.ndarray, marker: str | None, technical: dict
):
    """Write one series; slice k goes to the file numbered order[k] (a shuffle, never slice order)."""
    spacing, thickness = 0.8, 2.5
    h, w = volume.shape[1:]
    folder.mkdir(parents=True)
    for k, hu in enumerate(volume):
        z = -k * thickness  # head first: later instances lie further toward the feet
        geometry = {
            "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
            "ImagePositionPatient": [-spacing * (w - 1) / 2, -spacing * (h - 1) / 2, z],
            "PixelSpacing": [spacing, spacing],
            "SliceThickness": thickness,
            "SliceLocation": z,
            "InstanceNumber": k + 1,
        }
        series = identity["SeriesInstanceUID"]
        sop_uid = f"{series}.{k + 1}" if marker is not None else _uid(series, k)
        _slice_dataset(identity, hu, geometry, sop_uid, technical).save_as(
            folder / f"IM{order[k] + 1:04d}.dcm", enforce_file_format=True
        )


def _check(patients: int, slices: int, size: tuple[int, int], marker: str | None) -> None:
    if patients < 2 or slices < 2:
        raise DataError(f"a synthetic set needs at least 2 patients and 2 slices, got {patients}, {slices}")
    if min(size) < 8:
        raise DataError(f"synthetic slices need at least 8 x 8 pixels, got {size[0]} x {size[1]}")
    if marker is not None and not MARKER_PATTERN.fullmatch(marker):
        raise DataError(f"a marker is 1-16 characters of A-Z, 0-9 and _, got {marker!r}")


def _technical(acquisition: Mapping[str, Mapping[str, object]] | None) -> dict[str, dict]:
    """The technical fields of each class: ACQUISITION updated by ``acquisition[class]``."""
    given = dict(acquisition or {})
    unknown = sorted(set(given) - set(CLASSES)) + sorted(
        f"{name}" for fields in given.values() for name in fields if name not in SETTABLE
    )
    if unknown:
        raise DataError(f"acquisition takes classes {CLASSES} and fields {SETTABLE}, got {unknown}")
    return {label: {**ACQUISITION, **given.get(label, {})} for label in CLASSES}


def write_synthetic_set(
    root: Path | str,
    *,
    patients: int = 4,
    slices: int = 8,
    size: tuple[int, int] = (32, 32),
    marker: str | None = None,
    seed: int = 0,
    acquisition: Mapping[str, Mapping[str, object]] | None = None,
) -> SyntheticSet:
    """Write ``patients`` x 1 study x 1 series x ``slices`` DICOM slices of ``size`` (H, W) under
    ``root``/caseNNN/ and ``root``/labels.csv (patient_id, label); ``root`` must be empty or new.
    Deterministic for a given seed. See the module docstring for the images and ``marker``;
    ``acquisition`` maps a class to technical fields that replace ACQUISITION's for its slices."""
    from pydicom import config

    _check(patients, slices, size, marker)
    technical = _technical(acquisition)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root} is not empty; give a new folder for the synthetic set")
    rng = np.random.default_rng(seed)
    written = []
    # marker values are invalid for UIDs and dates; let pydicom store them as given, then restore
    saved = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.IGNORE
    try:
        for index in range(patients):
            label = CLASSES[index % 2]
            identity = _identity(index, seed, marker)
            volume = _hu_volume(rng, slices, size, blob=label == CLASSES[1])
            order = rng.permutation(slices)
            if np.array_equal(order, np.arange(slices)):
                order = order[::-1].copy()
            _write_series(root / f"case{index:03d}", identity, volume, order, marker, technical[label])
            written.append((identity["PatientID"], label))
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = saved
    buffer = io.StringIO()
    table = csv.writer(buffer, lineterminator="\n")
    table.writerow(LABEL_COLUMNS)
    table.writerows(written)
    labels = root / LABELS_FILE
    write_text(labels, buffer.getvalue())
    return SyntheticSet(root, labels, tuple(written))
