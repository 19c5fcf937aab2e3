"""Report sections come from the ``ctframe_report_sections`` hook, the core's own included.

Light at import (no numpy, no matplotlib): the plugin manager imports the core's implementation
(:mod:`ctframe.report.core_sections`) whenever it is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.report import html
from ctframe.storage.files import write_bytes
from ctframe.storage.layout import PLOT, PLOTS

if TYPE_CHECKING:
    import pluggy

    from ctframe.registry.plugins import Registry
    from ctframe.report.artifacts import RunArtifacts

HOOK = "ctframe_report_sections"
DEFAULT_ORDER = 750
"""Where a plugin's section goes unless it says: after the core's results, before the run's records."""
KEY = re.compile(r"[a-z][a-z0-9_]*")


class PlotWriter:
    """Writes each plot to ``plots/<name>.png`` in the run ``run`` and returns it embedded for the page."""

    def __init__(self, run: Path):
        self.run = run
        self.folder = PLOTS.path(run)
        self.written: list[Path] = []

    def __call__(self, name: str, png: bytes, alt: str, caption: str = "") -> str:
        path = write_bytes(PLOT.path(self.run, name), png)
        self.written.append(path)
        return html.image(png, alt, caption)


@dataclass(frozen=True)
class ReportContext:
    """What a section's ``build(report)`` receives; new attributes may be added later."""

    run: RunArtifacts
    """The run directory's files, read tolerantly (see :mod:`ctframe.report.artifacts`)."""
    plot: PlotWriter
    """``plot(name, png_bytes, alt, caption) -> html``: writes ``plots/<name>.png`` and embeds it."""
    registry: Registry
    """The installed plugins (to rebuild a model from its model file, read images, ...)."""


@dataclass(frozen=True)
class ReportSection:
    key: str
    title: str
    build: Callable[[ReportContext], str]
    order: float
    plugin: str


@dataclass
class Collected:
    sections: list[ReportSection] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """``(plugin, one line)`` for each refused registration or hook that raised."""


def _make_register(plugin: str, collected: Collected, taken: dict[str, str]) -> Callable[..., None]:
    def register(
        key: str, title: str, build: Callable[[ReportContext], str], order: float = DEFAULT_ORDER
    ) -> None:
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise ValueError(f"section key {key!r}: use lower-case letters, digits and _")
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"section {key!r}: the title must be a non-empty string")
        if not callable(build):
            raise ValueError(f"section {key!r}: build is not callable")
        if isinstance(order, bool) or not isinstance(order, int | float):
            raise ValueError(f"section {key!r}: order must be a number, got {order!r}")
        if key in taken:  # the first one keeps its place; ids must be unique in the page
            collected.problems.append(
                (plugin, f"section {key!r} is already added by {taken[key]!r}; left out")
            )
            return
        taken[key] = plugin
        collected.sections.append(ReportSection(key, " ".join(title.split()), build, float(order), plugin))

    return register


def collect_sections(manager: pluggy.PluginManager) -> Collected:
    """Every registered section, in page order; a plugin whose hook raises loses only its own."""
    collected = Collected()
    taken: dict[str, str] = {}
    # get_hookimpls() lists in registration order (the core's first), so the core keeps its keys.
    for impl in getattr(manager.hook, HOOK).get_hookimpls():
        plugin = impl.plugin_name
        before = len(collected.sections)
        register = _make_register(plugin, collected, taken)
        try:
            arguments: dict[str, Any] = {"register": register}
            impl.function(**{name: arguments[name] for name in impl.argnames})
        except Exception as error:  # a plugin's bug must not cost the report
            for section in collected.sections[before:]:
                taken.pop(section.key, None)
            del collected.sections[before:]
            collected.problems.append((plugin, f"{type(error).__name__}: {' '.join(str(error).split())}"))
    collected.sections.sort(key=lambda s: s.order)  # stable: ties keep registration order
    return collected
