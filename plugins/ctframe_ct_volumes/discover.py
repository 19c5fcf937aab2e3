"""Find the CT series (DICOM) and NIfTI volumes under a folder, reading headers only.

Any nesting and any file names are accepted: a file is DICOM when it carries the ``DICM`` preamble,
NIfTI when it ends in ``.nii`` or ``.nii.gz``. Everything else that is found is skipped and counted
by reason, with a few example paths, so that a user can see what was left out and why.
Pixel data is never read here (``stop_before_pixels``), which keeps discovery of many files cheap;
truncated files are still caught by comparing the bytes left after the header with what the header
announces.
"""

from __future__ import annotations

import os
import stat
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from ctframe.api import DataError

from .grouping import group_series
from .series import (
    Series,
    SharedValues,
    SliceHeader,
    dataset_normal,
    quiet_dcmread,
    quiet_pydicom,
)

EXAMPLES_PER_REASON = 3
AXIAL_MIN_NORMAL_Z = 0.85  # |normal . z| below this (about 32 degrees off) is not an axial slice

# Skip reasons (the keys of ``Discovery.skipped``).
NOT_MEDICAL = "neither DICOM nor NIfTI"
NOT_REGULAR = "not a regular file"  # FIFO, socket, device: never opened (a FIFO would block)
DICOMDIR = "DICOMDIR"
UNREADABLE = "unreadable or corrupt DICOM"
TRUNCATED = "truncated pixel data"
NON_IMAGE = "not an image (SR, RTSTRUCT, SEG, presentation state, ...)"
NOT_CT = "not CT"
MULTI_FRAME = "multi-frame image (not supported)"
LOCALIZER = "localizer"
NOT_AXIAL = "not axial (reformat)"
DUPLICATE = "duplicate slice position"

_DIRECTORY_CLASS = "1.2.840.10008.1.3.10"
_CT_IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
}
_NON_IMAGE_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, segmentation
    "1.2.840.10008.5.1.4.1.1.481.",  # radiotherapy objects
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA
)
_NON_IMAGE_MODALITIES = {"SR", "RTSTRUCT", "RTPLAN", "RTRECORD", "SEG", "PR", "KO", "REG", "DOC", "PLAN"}
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


@dataclass
class Discovery:
    """What ``discover`` found: ordered CT series, NIfTI files, and the skipped files by reason."""

    root: Path
    series: list[Series]
    nifti: list[Path]
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Path]] = field(default_factory=dict)

    def skip(self, reason: str, path: str | Path) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(Path(path))

    def summary(self) -> str:
        """One line: what was found and what was skipped."""
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return f"{len(self.series)} DICOM series, {len(self.nifti)} NIfTI file(s) under {self.root}" + (
            f"; skipped {skipped}" if skipped else ""
        )


def is_regular(path: str | Path) -> bool:
    """Whether ``path`` (symlinks followed) is a regular file, from its metadata alone; a path that
    cannot be stat-ed counts as regular, so that reading it says why it cannot be read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def _is_nifti(path: str | Path) -> bool:
    name = os.path.basename(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _has_preamble(path: str | Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _pixels_complete(ds: pydicom.Dataset, rest: bytes, tail: bytes, size_left: int) -> bool:
    """Whether the bytes after the header hold all the pixel data the header announces."""
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return tail == _SEQUENCE_END  # an encapsulated pixel data sequence ends with its delimiter
    implicit = ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.ImplicitVRLittleEndian
    length = struct.unpack("<I", rest[4:8] if implicit else rest[8:12])[0]
    header = 8 if implicit else 12
    frames = int(ds.get("NumberOfFrames") or 1)
    expected = ds.Rows * ds.Columns * int(ds.get("SamplesPerPixel") or 1) * frames * ds.BitsAllocated // 8
    return length >= expected and size_left >= header + expected


def _read_header(path: str | Path) -> tuple[pydicom.Dataset | None, str | None]:
    """The header of a DICOM file and ``None``, or ``None`` and a skip reason."""
    if os.path.basename(path).upper() == "DICOMDIR":
        return None, DICOMDIR
    try:
        with open(path, "rb") as handle:
            ds = quiet_dcmread(handle, stop_before_pixels=True)
            rest = handle.read(12)
            size_left = os.fstat(handle.fileno()).st_size - handle.tell() + len(rest)
            handle.seek(-8, os.SEEK_END)
            tail = handle.read(8)
    except Exception:  # pydicom raises many kinds of errors on damaged files
        return None, UNREADABLE
    if "TransferSyntaxUID" not in ds.file_meta:  # every Part 10 file has one; garbage after DICM has not
        return None, UNREADABLE
    if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == _DIRECTORY_CLASS:
        return None, DICOMDIR
    # A deflated file is read through a decompressed copy: its file position says nothing about the
    # pixel data, so only decoding (Series.volume) can find it truncated.
    deflated = ds.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    reason = _classify(ds, _PIXEL_DATA_TAG if deflated and "PixelData" not in ds else rest)
    if reason is None and not deflated:
        try:
            complete = _pixels_complete(ds, rest, tail, size_left)
        except (struct.error, AttributeError, TypeError, ValueError):
            return None, UNREADABLE
        if not complete:
            return None, TRUNCATED
    return (ds, None) if reason is None else (None, reason)


def _classify(ds: pydicom.Dataset, rest: bytes) -> str | None:
    """The skip reason for a readable DICOM header, or None for an axial CT image slice."""
    sop_class = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if sop_class.startswith(_NON_IMAGE_CLASS_PREFIXES) or modality in _NON_IMAGE_MODALITIES:
        return NON_IMAGE
    if not rest.startswith(_PIXEL_DATA_TAG):
        # A CT image header that ends before its pixel data was cut short; otherwise it is not an image.
        return TRUNCATED if ds.get("Rows") or sop_class in _CT_IMAGE_CLASSES else NON_IMAGE
    # A missing Modality is accepted when the header carries the CT rescale to HU (some exports drop it).
    ct_like = "RescaleSlope" in ds and "RescaleIntercept" in ds
    if modality != "CT" and not (modality == "" and ct_like):
        return NOT_CT
    if int(ds.get("NumberOfFrames") or 1) > 1:
        return MULTI_FRAME
    if any("LOCALIZER" in str(value).upper() for value in (ds.get("ImageType") or [])):
        return LOCALIZER
    normal = dataset_normal(ds)
    if normal is not None and abs(float(normal[2])) < AXIAL_MIN_NORMAL_Z:
        return NOT_AXIAL
    return None


def _walk(root: Path) -> Iterator[str]:
    """Every file under ``root``, folder by folder, names sorted; one at a time, not a list of all.

    Paths as text: a Path per file would cost time, and it interns its file name (see from_dataset).
    """
    for folder, folders, names in os.walk(root):
        folders.sort()
        for name in sorted(names):
            yield os.path.join(folder, name)


def discover(root: str | Path) -> Discovery:
    """Classify every file under ``root`` and group the CT slices into ordered series.

    DataError (one line) when ``root`` is not a folder, when a series is inconsistent, or when
    nothing usable is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    found = Discovery(root=root, series=[], nifti=[])
    with quiet_pydicom():
        headers = _headers(root, found)
    found.series = group_series(headers, root)
    for series in found.series:
        for path in series.duplicates:
            found.skip(DUPLICATE, path)
    if not found.series and not found.nifti:
        raise DataError(f"no CT series or NIfTI volume found: {found.summary()}")
    return found


def _headers(root: Path, found: Discovery) -> list[SliceHeader]:
    """The slice headers of every CT file under ``root``; everything else noted in ``found``."""
    headers = []
    shared = SharedValues()  # the slices of a series hold one copy of what they have in common
    for path in _walk(root):
        if not is_regular(path):
            found.skip(NOT_REGULAR, path)
        elif _is_nifti(path):
            found.nifti.append(Path(path))
        elif os.path.basename(path).upper() != "DICOMDIR" and not _has_preamble(path):
            found.skip(NOT_MEDICAL, path)
        else:
            ds, reason = _read_header(path)
            if reason is not None:
                found.skip(reason, path)
            else:
                headers.append(SliceHeader.from_dataset(path, ds, shared))
    return headers
