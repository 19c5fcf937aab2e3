"""Group CT slices into series and order them along the slice normal.

Slices are grouped by SeriesInstanceUID. An empty or malformed UID falls back to the key
(folder, rows, columns, orientation, pixel spacing) and the series records ``grouping_fallback``.
Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product of the
row and column direction cosines), by InstanceNumber when a position or orientation is missing, and
never by file name. Two slices at the same position: the first in that order is kept and the others
are listed in ``Series.duplicates`` (discovery counts them as skipped), since exported studies often
hold the same slice twice and refusing the whole series would lose a usable scan.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ctframe.api import DataError
from ctframe_ct_volumes.series import Series, SliceHeader, valid_uid

_POSITION_TOLERANCE_MM = 0.01  # two slices closer than this along the normal are the same slice
_ORIENTATION_TOLERANCE = 1e-4


def _fallback_key(header: SliceHeader, root: Path | None) -> str:
    # the folder relative to the scanned root: moving or copying the data set keeps the series' id
    folder = Path(header.folder)
    if root is not None and folder.is_relative_to(root):
        folder = folder.relative_to(root)
    key = repr((folder.as_posix(), header.rows, header.columns, header.orientation, header.pixel_spacing))
    return "fallback-" + hashlib.sha256(key.encode()).hexdigest()[:16]


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
    keyed.sort(key=lambda item: (item[0], item[1].instance_number or 0, item[1].file))
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
