"""The findings box at the top of the report: what went wrong, one sentence each with what to do
(``metrics.json`` ``findings``, :mod:`ctframe.evaluation.findings`), or what was checked and found fine."""

from __future__ import annotations

from html import escape

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts

CHECKED = (
    "No findings: no model predicts one class for nearly every test image, no threshold is far from what "
    "the ranking allows, no later model is worse than the one before it, and every class has at least "
    '10 validation images (docs/metrics.md, "Findings").'
)


def findings(run: RunArtifacts) -> str:
    if not run.metrics:
        return html.missing("no metrics.json: nothing to check yet")
    found = [f for f in run.metrics.get("findings") or [] if isinstance(f, dict) and f.get("message")]
    if not found:
        return html.verdict(CHECKED)
    items = "".join(f"<li>{escape(str(f['message']))}</li>" for f in found)
    said = f"{len(found)} finding(s): read these before the numbers below."
    return f'<div class="verdict bad"><p>{escape(said)}</p><ul>{items}</ul></div>'
