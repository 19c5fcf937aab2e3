"""Group CT slices into series, order them along the slice normal and read a series in HU.

Slices are grouped by SeriesInstanceUID. An empty or malformed UID falls back to the key
(folder, rows, columns, orientation, pixel spacing) and the series records ``grouping_fallback``.
Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product of the
row and column direction cosines), by InstanceNumber when a position or orientation is missing, and
never by file name. Two slices at the same position: the first in that order is kept and the others
are listed in ``Series.duplicates`` (discovery counts them as skipped), since exported studies often
hold the same slice twice and refusing the whole series would lose a usable scan.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import warnings
from collections import defaultdict
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
_POSITION_TOLERANCE_MM = 0.01  # two slices closer than this along the normal are the same slice
_ORIENTATION_TOLERANCE = 1e-4


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


@dataclass(frozen=True)
class SliceHeader:
    """What grouping and ordering need from one slice's header (no pixel data, no personal names)."""

    path: Path
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

    @classmethod
    def from_dataset(cls, path: Path, ds: pydicom.Dataset) -> SliceHeader:
        instance = _number(ds, "InstanceNumber")
        technical = {}
        for keyword, name in TECHNICAL_FIELDS.items():
            value = ds.get(keyword)
            if value is not None and str(value).strip():
                multiple = isinstance(value, (list, tuple, MultiValue))
                technical[name] = "\\".join(map(str, value)) if multiple else str(value).strip()
        return cls(
            path=path,
            series_uid=_text(ds, "SeriesInstanceUID"),
            study_uid=_text(ds, "StudyInstanceUID"),
            patient_id=_text(ds, "PatientID"),
            rows=int(ds.get("Rows") or 0),
            columns=int(ds.get("Columns") or 0),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            position=_floats(ds.get("ImagePositionPatient"), 3),
            instance_number=None if instance is None else int(instance),
            pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
            technical=technical,
        )

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        length = float(np.linalg.norm(normal))
        return normal / length if length > 1e-6 else None


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


def _fallback_key(header: SliceHeader, root: Path | None) -> str:
    # the folder relative to the scanned root: moving or copying the data set keeps the series' id
    folder = header.path.parent
    if root is not None and folder.is_relative_to(root):
        folder = folder.relative_to(root)
    key = repr((folder.as_posix(), header.rows, header.columns, header.orientation, header.pixel_spacing))
    return "fallback-" + hashlib.sha256(key.encode()).hexdigest()[:16]


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


def group_series(headers: list[SliceHeader], root: Path | None = None) -> list[Series]:
    """Group slice headers into ordered series; DataError naming the series for inconsistent ones."""
    groups: dict[tuple[str, bool], list[SliceHeader]] = defaultdict(list)
    for header in headers:
        if valid_uid(header.series_uid):
            groups[(header.series_uid, False)].append(header)
        else:
            groups[(_fallback_key(header, root), True)].append(header)
    return [_build(series_id, fallback, members) for (series_id, fallback), members in sorted(groups.items())]


def _check_consistent(series_id: str, members: list[SliceHeader]) -> None:
    sizes = sorted({(h.rows, h.columns) for h in members})
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in sizes)
        raise DataError(f"a series in {members[0].path.parent} mixes image sizes ({shown}); split it by size")
    orientations = [h.orientation for h in members]
    first = orientations[0]
    for other in orientations[1:]:
        same = (first is None and other is None) or (
            first is not None and other is not None and np.allclose(first, other, atol=_ORIENTATION_TOLERANCE)
        )
        if not same:
            raise DataError(
                f"a series in {members[0].path.parent} mixes slice orientations; split it by orientation"
            )


def _order(series_id: str, members: list[SliceHeader]) -> tuple[list[SliceHeader], list[float] | None]:
    """Slices in order and their positions along the normal (None when ordered by InstanceNumber)."""
    normal = members[0].normal
    if normal is not None and all(h.position is not None for h in members):
        keyed = [(float(np.dot(h.position, normal)), h) for h in members]
    elif all(h.instance_number is not None for h in members):
        keyed = [(float(h.instance_number), h) for h in members]  # type: ignore[arg-type]
        normal = None
    else:
        raise DataError(
            f"a series in {members[0].path.parent}: slices have neither position and orientation nor "
            "InstanceNumber, so their order is unknown"
        )
    # The instance number and path only break exact ties, so that the kept duplicate is deterministic.
    keyed.sort(key=lambda item: (item[0], item[1].instance_number or 0, str(item[1].path)))
    return [h for _, h in keyed], ([k for k, _ in keyed] if normal is not None else None)


def _drop_duplicates(
    ordered: list[SliceHeader], positions: list[float] | None
) -> tuple[list[SliceHeader], list[float] | None, list[Path]]:
    kept: list[SliceHeader] = []
    kept_positions: list[float] = []
    duplicates: list[Path] = []
    for index, header in enumerate(ordered):
        key = positions[index] if positions is not None else float(header.instance_number or 0)
        if kept_positions and abs(key - kept_positions[-1]) < _POSITION_TOLERANCE_MM:
            duplicates.append(header.path)
            continue
        kept.append(header)
        kept_positions.append(key)
    return kept, (kept_positions if positions is not None else None), duplicates


def _slice_spacing(positions: list[float] | None, first: SliceHeader) -> float | None:
    if positions is not None and len(positions) > 1:
        return float(np.median(np.diff(positions)))
    thickness = first.technical.get("slice_thickness")
    try:
        return float(thickness) if thickness else None
    except ValueError:
        return None


def _build(series_id: str, fallback: bool, members: list[SliceHeader]) -> Series:
    _check_consistent(series_id, members)
    ordered, positions = _order(series_id, members)
    kept, positions, duplicates = _drop_duplicates(ordered, positions)
    first = kept[0]
    study_id = first.study_uid or series_id
    if first.patient_id:
        patient_id, source = first.patient_id, "PatientID"
    elif first.study_uid:
        patient_id, source = first.study_uid, "StudyInstanceUID"
    else:
        patient_id, source = series_id, ("fallback" if fallback else "SeriesInstanceUID")
    row_spacing, column_spacing = first.pixel_spacing or (None, None)
    return Series(
        series_id=series_id,
        study_id=study_id,
        patient_id=patient_id,
        patient_id_source=source,
        grouping_fallback=fallback,
        slices=kept,
        duplicates=duplicates,
        spacing=(_slice_spacing(positions, first), row_spacing, column_spacing),
        technical=dict(first.technical),
    )
