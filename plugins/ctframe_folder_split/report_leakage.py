"""The report's leakage check: ``leakage.json`` (or the ``leakage`` entry of the split summary) in words."""

from __future__ import annotations

from typing import Any

from ctframe.api.report import ReportContext, RunArtifacts, html
from ctframe_folder_split.report import is_folder_split_run
from ctframe_folder_split.run_files import LEAKAGE

KEYS = ("level", "n_test", "count_above", "share_above", "loud")
"""What a leakage record must hold for this section to read it."""


def _percent(value: Any) -> str:
    return (
        f"{value:.1%}" if isinstance(value, int | float) and not isinstance(value, bool) else "not estimated"
    )


def leakage_verdict(record: dict[str, Any]) -> str:
    count, total, level = record["count_above"], record["n_test"], record["level"]
    found = f"{count} of {total} test images ({_percent(record['share_above'])})"
    chance = _percent(record.get("chance_share"))
    if record["loud"]:
        return (
            f"Likely leakage: {found} have a training image at similarity {level:.2f} or more, against "
            f"{chance} expected by chance; test scores are probably optimistic."
        )
    return (
        f"No sign of leakage at similarity {level:.2f}: {found} have a training image that close, against "
        f"{chance} expected by chance."
    )


def _record(run: RunArtifacts) -> dict[str, Any] | None:
    """``leakage.json``, else (only when there is no such file) the copy in the split summary."""
    record = run.read_json(LEAKAGE)
    copy = (run.split_summary or {}).get("leakage")
    if record is None and LEAKAGE.name not in run.problems and isinstance(copy, dict):
        return copy
    return record


def _facts(record: dict[str, Any]) -> list[list[Any]]:
    facts: list[list[Any]] = [
        ["Similarity level", f"{record['level']:.2f}"],
        ["Test images checked", record["n_test"]],
        [
            "Test images with a training image at the level or above",
            f"{record['count_above']} ({_percent(record['share_above'])})",
        ],
        ["Expected by chance (other classes)", _percent(record.get("chance_share"))],
    ]
    if isinstance(record.get("median_nearest"), int | float):
        facts.append(["Median similarity to the closest training image", f"{record['median_nearest']:.3f}"])
    facts.append(["Verdict", "leakage" if record["loud"] else "quiet"])
    return facts


def _profile(record: dict[str, Any]) -> list[str]:
    """The share above chance at other similarity levels, when the check measured them."""
    profile = [p for p in record.get("profile") or [] if isinstance(p, dict) and "level" in p]
    if not profile:
        return []
    rows = []
    for point in profile:
        share, by_chance = point.get("share_above"), point.get("chance_share")
        numbers = isinstance(share, int | float) and isinstance(by_chance, int | float)
        rows.append(
            [
                f"{point['level']:.2f}",
                _percent(share),
                _percent(by_chance),
                f"{share - by_chance:+.1%}" if numbers else "n/a",
            ]
        )
    columns = ["Similarity at least", "Test images with a training image that close", "Expected by chance"]
    return [html.heading("At other similarity levels"), html.table([*columns, "Excess"], rows)]


def leakage_section(report: ReportContext) -> str:
    run = report.run
    if not is_folder_split_run(run):
        return ""
    record = _record(run)
    if record is None:
        problem = run.problems.get(LEAKAGE.name)
        if problem:
            return html.missing(f"{LEAKAGE.name} is {problem}")
        return html.paragraph(
            "No leakage check was recorded (leakage_check is off, or the run stopped before its split).",
            "muted",
        )
    if not all(key in record for key in KEYS):
        return html.paragraph("The leakage record has a form this report does not know:", "muted") + (
            html.structure(record)
        )
    parts = [
        html.verdict(leakage_verdict(record), bad=bool(record["loud"])),
        html.paragraph(
            "For every test image the check finds its most similar training or validation image "
            "(correlation of small thumbnails). It fires when the share at or above the level exceeds "
            f"chance by more than {_percent(record.get('tolerance'))}; chance is the same search against "
            "images of other classes."
        ),
        html.table(["Measure", "Value"], _facts(record)),
        *_profile(record),
    ]
    pairs = [p for p in record.get("worst_pairs") or [] if isinstance(p, dict)]
    if pairs:
        rows = [[p.get("test", "?"), p.get("train", "?"), p.get("similarity")] for p in pairs]
        parts.append(html.heading("Closest test and training images"))
        parts.append(html.table(["Test image", "Closest training image", "Similarity"], rows))
    grouped = (run.split_summary or {}).get("group_by") not in (None, "none")
    if grouped and not record["loud"]:
        parts.append(
            html.paragraph(
                "A grouped split keeps near-copies together by construction, so quiet at the check's own "
                "level says little: compare the lower levels above with chance, and prefer external or "
                "grouped evaluation for the final word.",
                "muted",
            )
        )
    return "\n".join(parts)
