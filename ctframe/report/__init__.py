"""The run report: ``report.html`` (self-contained, opens offline) and ``plots/*.png``.

Built from the files of a run directory only, so ``ctframe report RUN_DIR`` can rebuild it at any
time. Its sections come from the ``ctframe_report_sections`` hook (the core's own in
:mod:`ctframe.report.core_sections`); this module stays light because the plugin manager imports
it: numpy and matplotlib are imported only when a report is drawn.
"""

from __future__ import annotations

from pathlib import Path

from ctframe.base.errors import RunError
from ctframe.registry.plugins import Registry, get_registry
from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts, read_run
from ctframe.report.context import PlotWriter, ReportContext, collect_sections
from ctframe.storage.files import write_text
from ctframe.storage.layout import REPORT, RUN_MARKERS


def guarded(build, what: str) -> str:
    """A section that raises says so in one line instead of stopping the whole report."""
    try:
        return build()
    except Exception as error:  # a broken file or a plugin's bug must not cost the other sections
        return html.missing(
            f"{what} could not be built: {type(error).__name__}: {' '.join(str(error).split())}"
        )


def render(report: ReportContext) -> str:
    collected = collect_sections(report.registry.manager)
    parts = [
        (section.key, section.title, guarded(lambda s=section: s.build(report), section.title))
        for section in collected.sections
    ]
    parts = [part for part in parts if part[2]]  # a section that has nothing to say for this run returns ""
    if collected.problems:
        lines = [f"plugin {plugin!r}: {why}" for plugin, why in collected.problems]
        parts.append(("plugin_sections", "Plugin sections left out", "\n".join(map(html.missing, lines))))
    run = report.run
    state = (run.status or {}).get("state")
    subtitle = (
        f"ctframe run report{f' ({state})' if state else ''}; positive class: {run.positive_class or '?'}"
    )
    return html.page(f"Run {run.path.name}", subtitle, parts)


def build_report(run_dir: Path, registry: Registry | None = None) -> Path:
    """Write ``report.html`` and ``plots/*.png`` into ``run_dir``; return the report's path.

    ``registry`` (default: the installed plugins) supplies the report sections and what the
    gallery needs to read the test images through the run's model files.
    """
    run_dir = Path(run_dir)
    # a folder holding no run marker was not made by ctframe: never write a report into it
    if not run_dir.is_dir() or not any(marker.path(run_dir).is_file() for marker in RUN_MARKERS):
        raise RunError(f"{run_dir} is not a run directory; pass the folder a run created under its output")
    if registry is None:
        registry = get_registry()
    report = ReportContext(read_run(run_dir), PlotWriter(run_dir), registry)
    return write_text(REPORT.path(run_dir), render(report))


__all__ = ["PlotWriter", "ReportContext", "RunArtifacts", "build_report", "read_run"]
