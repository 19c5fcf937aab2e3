"""ctframe built-in plugin ``folder_split``: a class-folder image dataset with a seeded, group-aware,
leak-checked train / val / test split, plus ``ctframe audit`` for such folders and ``ctframe demo-data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe import hookimpl

if TYPE_CHECKING:
    from ctframe import AuditReport
    from ctframe.api import Register, RegisterSection


def build_folder_split(options: Any, context: Any) -> Any:
    """The dataset factory; torch and the image pipeline load only when a run needs them."""
    from ctframe_folder_split.factory import build_folder_split as build

    return build(options, context)


def check_folder_split(options: Any, context: Any) -> None:
    """Cheap checks before a run directory exists: the root and class folders, the group file."""
    from ctframe_folder_split.factory import check

    check(options, context)


def read_files(options: Any, context: Any) -> Any:
    """Reads new files as training did (``ctframe predict`` / ``evaluate``)."""
    from ctframe_folder_split.reader import build_reader

    return build_reader(options, context)


@hookimpl
def ctframe_register_datasets(register: Register) -> None:
    from ctframe_folder_split.options import FolderSplitOptions

    register(
        "folder_split",
        build_folder_split,
        FolderSplitOptions,
        "Images in one folder per class; seeded stratified group-aware train/val/test split with manifest",
        check=check_folder_split,
        reader=read_files,
    )


@hookimpl
def ctframe_audit(root: Path, options: dict[str, Any]) -> AuditReport | None:
    from ctframe_folder_split.audit import audit_folder

    return audit_folder(Path(root), options)


@hookimpl
def ctframe_report_sections(register: RegisterSection) -> None:
    """Groups, duplicates and the leakage check in the run report (for folder_split runs only)."""
    from ctframe_folder_split.report import register_sections

    register_sections(register)


@hookimpl
def ctframe_demo_data(register: Any) -> None:
    """``ctframe demo-data DIR`` (format png): the quickstart's class folders of CT-like slices."""
    from ctframe_folder_split.demo import write_demo_png

    register("png", write_demo_png, "CT-like greyscale PNG slices in COVID/ and non-COVID/ class folders")
