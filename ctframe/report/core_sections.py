"""The core's report sections, registered through ``ctframe_report_sections`` like any plugin's.

The plugin manager registers this module whatever ``CTFRAME_PLUGINS`` selects. Section code is
imported only when a report is built (numpy, matplotlib, torch for the gallery), not when the
manager is.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ctframe.base.hookspecs import hookimpl
from ctframe.report.context import ReportContext


def _lazy(target: str, *needs: str) -> Callable[[ReportContext], str]:
    """``build(report)`` calling ``ctframe.report.<module>.<function>(report.<need>, ...)``."""
    module, _, function = target.rpartition(".")

    def build(report: ReportContext) -> str:
        code = importlib.import_module(f"ctframe.report.{module}")
        return getattr(code, function)(*(getattr(report, need) for need in needs))

    build.__qualname__ = build.__name__ = function
    return build


CORE_SECTIONS = (
    ("findings", "Findings", 50, _lazy("sections.findings.findings", "run")),
    ("overview", "Overview", 100, _lazy("sections.facts.overview", "run")),
    ("metrics", "Test metrics", 200, _lazy("sections.results.metrics", "run")),
    ("folds", "Cross-validation folds", 250, _lazy("sections.results.folds", "run")),
    ("training", "Training curves", 300, _lazy("sections.plotted.training", "run", "plot")),
    ("curves", "ROC and precision-recall curves", 400, _lazy("sections.plotted.curves", "run", "plot")),
    ("confusion", "Confusion matrices", 500, _lazy("sections.plotted.confusion", "run", "plot")),
    ("gallery", "Test images by outcome", 550, _lazy("gallery.gallery", "run", "registry")),
    ("groups", "Groups by outcome", 560, _lazy("groups.groups_view", "run", "plot", "registry")),
    ("calibration", "Calibration", 600, _lazy("sections.plotted.reliability", "run", "plot")),
    (
        "uncertainty",
        "Recalibration and conformal sets",
        620,
        _lazy("sections.uncertainty.uncertainty", "run"),
    ),
    ("subgroups", "Subgroups", 650, _lazy("subgroups.subgroups_view", "run")),
    ("external", "External evaluations", 700, _lazy("sections.results.external", "run")),
    ("split", "Data split", 800, _lazy("sections.split.split", "run")),
    # 800-899: what the dataset plugin knows about its split (folder_split: groups 820, leakage 850)
    ("recipe", "Recipe", 900, _lazy("sections.facts.recipe", "run")),
    ("environment", "Environment", 1000, _lazy("sections.facts.environment", "run")),
    ("card", "Model card", 1050, _lazy("card.card_view", "run")),
    ("log", "Run log", 1100, _lazy("sections.facts.log", "run")),
)
"""(key, title, order, build): a plugin places its sections between these orders."""


@hookimpl
def ctframe_report_sections(register):
    for key, title, order, build in CORE_SECTIONS:
        register(key, title, build, order=order)
