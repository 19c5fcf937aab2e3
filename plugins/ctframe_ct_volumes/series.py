"""A CT slice's header as discovery keeps it (:class:`SliceHeader`, compact: values shared per
series), an ordered series (:class:`Series`) and its voxels in HU; pydicom kept quiet. How slices
become series is in :mod:`ctframe_ct_volumes.grouping`.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Compressed transfer syntaxes (JPEG Lossless, JPEG 2000) decode through pydicom's own pixel-data
# plugin path: pylibjpeg with pylibjpeg-libjpeg and pylibjpeg-openjpeg, pure pip wheels under MIT
# licences that pydicom finds by itself once installed. python-gdcm would also decode them but is a
# larger binary with its own licence and a separate handler, so it is not used.
import pydicom
from pydicom import config
from pydicom.multival import MultiValue

from ctframe.api import DataError

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def valid_uid(uid: str) -> bool:
    """Whether ``uid`` is a well-formed DICOM UID (digits and dots, no leading zeros, <= 64 chars)."""
    return 0 < len(uid) <= 64 and _UID.match(uid) is not None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _number(ds: pydicom.Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


# Technical acquisition fields a series exposes (keyword -> name); none of them identifies a person.
TECHNICAL_FIELDS = {
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "model",
    "ConvolutionKernel": "kernel",
    "SliceThickness": "slice_thickness",
    "PixelSpacing": "pixel_spacing",
    "KVP": "kvp",
    "ContrastBolusAgent": "contrast_agent",
}


class SharedValues:
    """One object per distinct header value, for the slices of one discovery.

    The slices of a series repeat their ids, size, orientation, pixel spacing and technical fields, and
    instance numbers repeat across series: each slice refers to the one copy held here instead of
    parsing its own, so that what discovery keeps per file is little more than its name and position.
    A table lives as long as one discovery (unlike ``sys.intern``, nothing outlives it). Floats are
    keyed by their bits: ``0.0 == -0.0``, and sharing must not turn one into the other.
    """

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}
        self._texts: dict[str, str] = {}
        self._ints: dict[int, int] = {}
        self._tuples: dict[bytes, tuple[float, ...]] = {}
        self._floats: dict[bytes, float] = {}
        self._technical: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def folder(self, head: str) -> str:
        """A file's folder as ``Path`` writes it (``str(Path(head))``), one string per folder."""
        written = self._folders.get(head)
        if written is None:
            written = self._folders[head] = str(Path(head))
        return written

    def text(self, value: str) -> str:
        return self._texts.setdefault(value, value)

    def integer(self, value: int) -> int:
        return self._ints.setdefault(value, value)

    def numbers(self, values: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """The tuple itself shared (orientation, pixel spacing: equal in every slice of a series)."""
        if values is None:
            return None
        return self._tuples.setdefault(struct.pack(f"{len(values)}d", *values), values)

    def position(self, values: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """A tuple per slice of shared floats (x and y repeat along a series, z does not)."""
        if values is None:
            return None
        return tuple(self._floats.setdefault(struct.pack("d", v), v) for v in values)

    def technical(self, fields: dict[str, str]) -> dict[str, str]:
        return self._technical.setdefault(tuple(fields.items()), fields)


def slice_normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    """The unit normal of a slice from its ImageOrientationPatient; None when missing or degenerate."""
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def dataset_normal(ds: pydicom.Dataset) -> np.ndarray | None:
    """:func:`slice_normal` of a header."""
    return slice_normal(_floats(ds.get("ImageOrientationPatient"), 6))


@dataclass(frozen=True, slots=True)
class SliceHeader:
    """What grouping and ordering need from one slice's header (no pixel data, no personal names).

    A series keeps one per slice, so it is small: slots, the path as its folder (shared by the folder's
    files) and name, and the values that slices have in common shared through :class:`SharedValues`.
    ``technical`` may be the same dict in many slices: read it, never change it.
    """

    folder: str
    name: str
    series_uid: str
    study_uid: str
    patient_id: str
    rows: int
    columns: int
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row cosines, then column cosines
    position: tuple[float, ...] | None  # ImagePositionPatient
    instance_number: int | None
    pixel_spacing: tuple[float, ...] | None  # (between rows, between columns) in mm
    technical: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.folder, self.name)

    @property
    def file(self) -> str:
        """``str(self.path)`` without making a Path (which interns the file name)."""
        return self.name if self.folder == "." else os.path.join(self.folder, self.name)

    @classmethod
    def from_dataset(
        cls, path: str | os.PathLike[str], ds: pydicom.Dataset, shared: SharedValues | None = None
    ) -> SliceHeader:
        """The header of ``ds`` read from ``path``; pass one ``shared`` for all the slices of a discovery."""
        shared = shared or SharedValues()
        # split from the path's text: Path.name would hand out the file name interned, and keeping it
        # would hold an entry of the interpreter's interned-string table per file
        head, file_name = os.path.split(os.fspath(path))
        instance = _number(ds, "InstanceNumber")
        technical = {}
        for keyword, name in TECHNICAL_FIELDS.items():
            value = ds.get(keyword)
            if value is not None and str(value).strip():
                multiple = isinstance(value, (list, tuple, MultiValue))
                technical[name] = "\\".join(map(str, value)) if multiple else str(value).strip()
        return cls(
            folder=shared.folder(head),
            name=file_name,
            series_uid=shared.text(_text(ds, "SeriesInstanceUID")),
            study_uid=shared.text(_text(ds, "StudyInstanceUID")),
            patient_id=shared.text(_text(ds, "PatientID")),
            rows=shared.integer(int(ds.get("Rows") or 0)),
            columns=shared.integer(int(ds.get("Columns") or 0)),
            orientation=shared.numbers(_floats(ds.get("ImageOrientationPatient"), 6)),
            position=shared.position(_floats(ds.get("ImagePositionPatient"), 3)),
            instance_number=None if instance is None else shared.integer(int(instance)),
            pixel_spacing=shared.numbers(_floats(ds.get("PixelSpacing"), 2)),
            technical=shared.technical(technical),
        )

    @property
    def normal(self) -> np.ndarray | None:
        return slice_normal(self.orientation)


@dataclass
class Series:
    """One CT series: slices in order, ids with their fallbacks, spacing and technical fields."""

    series_id: str
    study_id: str
    patient_id: str
    patient_id_source: str  # "PatientID", "StudyInstanceUID", "SeriesInstanceUID" or "fallback"
    grouping_fallback: bool  # True when the SeriesInstanceUID was empty or malformed
    slices: list[SliceHeader]
    duplicates: list[Path]
    spacing: tuple[float | None, float | None, float | None]  # (slice, row, column) in mm
    technical: dict[str, str]

    @property
    def slice_count(self) -> int:
        return len(self.slices)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.slices), self.slices[0].rows, self.slices[0].columns)

    def volume(self) -> np.ndarray:
        """The series in HU (stored x RescaleSlope + RescaleIntercept), float32, (slices, rows, cols)."""
        with quiet_pydicom():
            return self._read_volume()

    def _read_volume(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for index, header in enumerate(self.slices):
            try:
                ds = quiet_dcmread(header.path)
                pixels = ds.pixel_array
            except Exception as error:  # pydicom and its decoders raise many kinds of errors
                raise DataError(
                    f"cannot decode {header.path} (slice {index + 1} of {len(self.slices)} of its series): "
                    f"{str(error).splitlines()[0]}"
                ) from error
            if pixels.shape != self.shape[1:]:
                raise DataError(f"{header.path} holds {pixels.shape} pixels, its series {self.shape[1:]}")
            slope = _number(ds, "RescaleSlope")
            intercept = _number(ds, "RescaleIntercept")
            out[index] = pixels.astype(np.float32) * np.float32(1.0 if slope is None else slope) + np.float32(
                intercept or 0.0
            )
        return out


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom without validation warnings inside the block. pydicom words an invalid value into its
    warning (a malformed UID, a name) when a header is read or an element first used, and those warnings
    would carry header values onto the console and into logs."""
    saved = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        config.settings.reading_validation_mode = saved


def quiet_dcmread(source: Any, **options: Any) -> pydicom.Dataset:
    """``pydicom.dcmread`` inside :func:`quiet_pydicom`; use the dataset inside one too."""
    with quiet_pydicom():
        return pydicom.dcmread(source, **options)
