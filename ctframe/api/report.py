"""What a report section needs (the ``ctframe_report_sections`` hook); light: no numpy, no matplotlib.

A section's ``build(report)`` receives a :class:`ReportContext`: ``report.run`` (a
:class:`RunArtifacts`: the core's files of the run, read tolerantly, and ``read_json`` /
``read_csv`` / ``read_text`` for the files a plugin writes itself), ``report.plot`` (a
:class:`PlotWriter`) and ``report.registry``. ``html`` escapes what it is given and holds the
report's table, paragraph, verdict and image helpers; ``number`` reads a CSV cell. A section
without an ``order`` lands at ``DEFAULT_ORDER``; docs/plugins.md lists the core sections' orders.
"""

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.report.context import DEFAULT_ORDER, PlotWriter, ReportContext

__all__ = ["DEFAULT_ORDER", "PlotWriter", "ReportContext", "RunArtifacts", "html", "number"]
