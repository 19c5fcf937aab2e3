"""What the dataset and the reader share: discovered series and NIfTI files as Volumes (pseudonymous
names, raw keys kept inside for labelling only), and HU volumes to windowed, resized uint8 slices.

A NIfTI file carries no patient, study or series id: all three are its path relative to the folder it
was found under, without the .nii / .nii.gz ending.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ctframe_ct_volumes.discover import Discovery
from ctframe_ct_volumes.nifti import read_nifti
from ctframe_ct_volumes.pseudonym import Pseudonymizer, allowed_fields, technical_fields
from ctframe_ct_volumes.series import TECHNICAL_FIELDS, Series
from ctframe_ct_volumes.windows import get_windows, select_slices, to_channels, to_uint8


@dataclass
class Volume:
    """One series or NIfTI file. ``name`` and ``patient`` are pseudonyms (or raw ids with raw_ids);
    ``keys`` holds, per label key, every value a labels CSV may use for it (raw id and pseudonym)."""

    name: str
    patient: str
    keys: dict[str, tuple[str, ...]]
    load: Callable[[], np.ndarray]
    """Reads the voxels: HU float32 (slices, rows, cols)."""
    study: str = ""
    """The study's pseudonym (or raw id with raw_ids)."""
    patient_source: str = ""
    """Which id stood in for the patient: PatientID, StudyInstanceUID, SeriesInstanceUID, fallback
    (the folder-and-geometry key) or path (a NIfTI file)."""
    technical: dict[str, Any] = field(default_factory=dict)
    """The allow-listed acquisition fields (pseudonym.technical_fields); empty for NIfTI."""
    sources: tuple[Path | str, ...] = ()
    """The files ``load`` reads, in slice order (a NIfTI file: itself); the slice cache keys an entry
    by their paths, sizes and modification times. Empty: the volume is not cached."""


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _nifti_id(path: Path, root: Path) -> str:
    text = relative(path, root)
    for ending in (".nii.gz", ".nii"):
        if text.lower().endswith(ending):
            return text[: -len(ending)]
    return text


def series_fields(series: Series) -> dict[str, Any]:
    """The allow-listed fields of a series as technical_fields gives them; a malformed number (a
    SliceThickness of "n/a") is left out rather than stopping the run."""
    keywords = {name: keyword for keyword, name in TECHNICAL_FIELDS.items()}
    raw: dict[str, Any] = {keywords[name]: text for name, text in series.technical.items()}
    raw.setdefault("ContrastBolusAgent", "")
    raw.update(Rows=series.shape[1], Columns=series.shape[2])
    if "PixelSpacing" in raw:
        raw["PixelSpacing"] = str(raw["PixelSpacing"]).split("\\")  # SliceHeader joined the values
    found: dict[str, Any] = {}
    for keyword in allowed_fields():
        if keyword in raw:
            try:  # one field at a time, so one bad value does not hide the others
                found[keyword] = technical_fields(SimpleNamespace(**{keyword: raw[keyword]}))[keyword]
            except (KeyError, TypeError, ValueError):
                continue
    return found


def _from_series(series: Series, root: Path, pseudonym: Pseudonymizer) -> Volume:
    return Volume(
        name=pseudonym.series(series.series_id),
        patient=pseudonym.patient(series.patient_id),
        keys={
            "patient": (series.patient_id, pseudonym.patient(series.patient_id)),
            "study": (series.study_id, pseudonym.study(series.study_id)),
            "series": (series.series_id, pseudonym.series(series.series_id)),
            "path": (relative(series.slices[0].path.parent, root),),
        },
        load=series.volume,
        study=pseudonym.study(series.study_id),
        patient_source=series.patient_id_source,
        technical=series_fields(series),
        sources=tuple(header.file for header in series.slices),
    )


def _from_nifti(path: Path, root: Path, pseudonym: Pseudonymizer) -> Volume:
    raw = _nifti_id(path, root)
    return Volume(
        name=pseudonym.series(raw),
        patient=pseudonym.patient(raw),
        keys={
            "patient": (raw, pseudonym.patient(raw)),
            "study": (raw, pseudonym.study(raw)),
            "series": (raw, pseudonym.series(raw)),
            "path": (relative(path, root),),
        },
        load=lambda: read_nifti(path).hu,
        study=pseudonym.study(raw),
        patient_source="path",
        sources=(path,),
    )


def volumes_of(discovery: Discovery, pseudonym: Pseudonymizer) -> list[Volume]:
    """Every DICOM series, then every NIfTI file, of a discovery."""
    root = discovery.root
    found = [_from_series(series, root, pseudonym) for series in discovery.series]
    return found + [_from_nifti(path, root, pseudonym) for path in discovery.nifti]


def nifti_volume(path: Path, pseudonym: Pseudonymizer) -> Volume:
    """A NIfTI file given on its own (the reader): its ids come from its file name."""
    return _from_nifti(path, path.parent, pseudonym)


def sample_id(volume_name: str, index: int) -> str:
    """``<series pseudonym>/<slice index, 4 digits>``: the index in the ordered series."""
    return f"{volume_name}/{index:04d}"


def slice_images(
    hu: np.ndarray,
    windows: Sequence[str | tuple[float, float]],
    rule: str,
    step: int,
    size: int,
) -> list[tuple[int, torch.Tensor]]:
    """(slice index, uint8 (3, size, size)) for each selected slice of a HU volume.

    Windowing comes first (uint8), then a bilinear, antialiased resize of the uint8 images to the
    square (torch's uint8 path, which rounds inside: within one grey level of resizing in float, about
    3x faster); a slice already of that size is left as it is. With one window for all three channels
    only one channel is resized and then repeated.
    """
    indices = select_slices(hu, rule, step=step)
    if len(indices) == 0:
        return []
    chosen = get_windows(list(windows))
    selected = hu[indices]
    if chosen[0] == chosen[1] == chosen[2]:
        images = torch.from_numpy(to_uint8(selected, chosen[0])).unsqueeze(1)  # (n, 1, H, W)
    else:
        images = torch.from_numpy(to_channels(selected, list(chosen)))  # (n, 3, H, W)
    if tuple(images.shape[-2:]) != (size, size):
        images = torch.nn.functional.interpolate(
            images.contiguous(memory_format=torch.channels_last),
            size=(size, size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    images = images.expand(-1, 3, -1, -1).contiguous()
    return [(int(index), images[position]) for position, index in enumerate(indices)]
