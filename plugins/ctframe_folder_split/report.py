"""folder_split's report sections: what only it knows about its split (groups, duplicates, leakage).

The core's "Data split" section (order 800) shows sizes and images per class from
``split_summary.json``; these follow it: groups and duplicates at 820, the leakage check at 850.
They read folder_split's own files (``split_manifest.csv``, ``leakage.json``) and its own keys of
the split summary, and say nothing (return ``""``) for a run of another dataset. The section code
(:mod:`.report_split`, :mod:`.report_leakage`) loads when a report is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ctframe.api import RegisterSection
from ctframe.api.report import ReportContext, RunArtifacts
from ctframe_folder_split.run_files import LEAKAGE, SPLIT_MANIFEST

COMPONENT = "folder_split"  # the dataset name this plugin registers
SECTIONS = (
    ("split_groups", "Groups and duplicates", 820, "report_split.groups_section"),
    ("leakage", "Leakage check", 850, "report_leakage.leakage_section"),
)
"""(key, title, order, builder): right after the core's data split (800), before the recipe (900)."""


def _lazy(target: str) -> Callable[[ReportContext], str]:
    module, _, function = target.partition(".")

    def build(report: ReportContext) -> str:
        return getattr(importlib.import_module(f"ctframe_folder_split.{module}"), function)(report)

    build.__qualname__ = build.__name__ = function
    return build


def register_sections(register: RegisterSection) -> None:
    for key, title, order, target in SECTIONS:
        register(key, title, _lazy(target), order=order)


def is_folder_split_run(run: RunArtifacts) -> bool:
    """The recipe names this dataset, or the run holds a file only this plugin writes."""
    mine = (SPLIT_MANIFEST.path(run.path), LEAKAGE.path(run.path))
    return run.component("dataset") == COMPONENT or any(path.is_file() for path in mine)
