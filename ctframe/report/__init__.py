"""The run report: ``report.html`` (self-contained, opens offline) and ``plots/*.png``.

Built from the files of a run directory only, so ``ctframe report RUN_DIR`` can rebuild it at any
time; matplotlib is imported only here, when a report is drawn.
"""

from __future__ import annotations

from pathlib import Path

from ctframe.report import html, sections
from ctframe.report.artifacts import RunArtifacts, read_run
from ctframe.rundir import write_text

REPORT = "report.html"
PLOTS = "plots"

SECTION_TITLES = {
    "overview": "Overview",
    "metrics": "Test metrics",
    "training": "Training curves",
    "curves": "ROC and precision-recall curves",
    "confusion": "Confusion matrices",
    "calibration": "Calibration",
    "external": "External evaluations",
    "split": "Data split",
    "recipe": "Recipe",
    "environment": "Environment",
    "log": "Run log",
}


def render(run: RunArtifacts, plot: sections.PlotWriter) -> str:
    builders = {
        "overview": lambda: sections.overview(run),
        "metrics": lambda: sections.metrics(run),
        "training": lambda: sections.training(run, plot),
        "curves": lambda: sections.curves(run, plot),
        "confusion": lambda: sections.confusion(run, plot),
        "calibration": lambda: sections.reliability(run, plot),
        "external": lambda: sections.external(run),
        "split": lambda: sections.split(run),
        "recipe": lambda: sections.recipe(run),
        "environment": lambda: sections.environment(run),
        "log": lambda: sections.log(run),
    }
    parts = [
        (key, SECTION_TITLES[key], sections.guarded(build, SECTION_TITLES[key]))
        for key, build in builders.items()
    ]
    state = (run.status or {}).get("state")
    subtitle = (
        f"ctframe run report{f' ({state})' if state else ''}; positive class: {run.positive_class or '?'}"
    )
    return html.page(f"Run {run.path.name}", subtitle, parts)


RUN_MARKERS = ("recipe.toml", "metrics.json")
"""A folder holding neither was not made by ``ctframe run``: never write a report into it."""


def build_report(run_dir: Path) -> Path:
    """Write ``report.html`` and ``plots/*.png`` into ``run_dir``; return the report's path."""
    from ctframe.errors import RunError

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any((run_dir / name).is_file() for name in RUN_MARKERS):
        raise RunError(f"{run_dir} is not a run directory; pass the folder a run created under its output")
    run = read_run(run_dir)
    page = render(run, sections.PlotWriter(run_dir / PLOTS))
    return write_text(run_dir / REPORT, page)


__all__ = ["REPORT", "build_report", "read_run"]
