"""CT volumes: find DICOM series and NIfTI volumes under a folder and read them in Hounsfield units.

``discover`` walks a folder tree and reads headers only, ``series`` groups and orders slices and
reads a series' voxels, ``nifti`` reads a NIfTI file into the same layout as a DICOM series.
The registered ``ct_volumes`` dataset (factory.py) labels, pseudonymises, splits by patient and windows
them into RGB slices; reader.py reads new scans the same way for ``ctframe predict`` / ``evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe import hookimpl

if TYPE_CHECKING:
    from ctframe.api import Register, RegisterSection


def build_ct_volumes(options: Any, context: Any) -> Any:
    """The dataset factory; torch, pydicom and nibabel load only when a run needs them."""
    from ctframe_ct_volumes.factory import build

    return build(options, context)


def check_ct_volumes(options: Any, context: Any) -> None:
    """Cheap checks before a run directory exists: root, labels file, pseudonym key."""
    from ctframe_ct_volumes.factory import check

    check(options, context)


def read_files(options: Any, context: Any) -> Any:
    """Reads new scans as training did (``ctframe predict`` / ``evaluate``)."""
    from ctframe_ct_volumes.reader import build_reader

    return build_reader(options, context)


@hookimpl
def ctframe_register_datasets(register: Register) -> None:
    from ctframe_ct_volumes.options import CtVolumesOptions

    register(
        "ct_volumes",
        build_ct_volumes,
        CtVolumesOptions,
        "CT series (DICOM) and NIfTI volumes as windowed RGB slices; labels per patient, study, series or "
        "folder; pseudonymous ids; patient-wise train/val/test split",
        check=check_ct_volumes,
        reader=read_files,
    )


@hookimpl(tryfirst=True)
def ctframe_audit(root: Path, options: dict[str, Any]) -> Any:
    """``ctframe audit ROOT`` for DICOM / NIfTI trees (None for anything else). Asked before folder_split,
    which would take ``--set classes=...`` on a DICOM tree as an image folder."""
    from ctframe_ct_volumes.audit import audit_ct_volumes

    return audit_ct_volumes(Path(root), options)


@hookimpl
def ctframe_report_sections(register: RegisterSection) -> None:
    """The "Example slices" section: test slices per class as the model saw them (ct_volumes runs only)."""
    from ctframe_ct_volumes.report import register_sections

    register_sections(register)


@hookimpl
def ctframe_demo_data(register: Any) -> None:
    """``ctframe demo-data DIR --format dicom``."""
    from ctframe_ct_volumes.demo import write_demo_dicom

    register("dicom", write_demo_dicom, "CT series as 12-bit DICOM, normal / nodule patients, labels.csv")
