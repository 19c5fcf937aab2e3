"""The report's "Groups and duplicates" section: how folder_split kept groups apart, and its checks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ctframe.api.report import ReportContext, RunArtifacts, html
from ctframe_folder_split.report import is_folder_split_run
from ctframe_folder_split.run_files import SPLIT_MANIFEST


def _group_count(groups: Any) -> int | None:
    """Groups over all splits, from ``{split: n}`` or ``{split: {class: n}}``."""
    if not isinstance(groups, dict) or not groups:
        return None
    total = 0
    for value in groups.values():
        if isinstance(value, dict):
            total += sum(v for v in value.values() if isinstance(v, int))
        elif isinstance(value, int):
            total += value
        else:
            return None
    return total


def _groups_in_several_splits(manifest: list[dict[str, str]] | None) -> int | None:
    """Groups of the manifest with files in more than one split; ``None`` when it records no groups."""
    if not manifest or "group" not in manifest[0]:
        return None
    splits: dict[str, set[str]] = {}
    for row in manifest:
        if row.get("group"):
            splits.setdefault(row["group"], set()).add(row.get("split", "?"))
    return sum(len(found) > 1 for found in splits.values())


def _duplicates_phrase(duplicates: Any) -> tuple[str, bool]:
    if not isinstance(duplicates, dict) or not isinstance(duplicates.get("sets"), int):
        return "", False
    sets = duplicates["sets"]
    if sets == 0:
        return " No two files have the same content.", False
    across = duplicates.get("across_classes") or 0
    text = f" {sets} set{'s' if sets != 1 else ''} of identical files ({duplicates.get('files', '?')} files)"
    text += f", {across} of them labelled with different classes." if across else "."
    return text, bool(across)


def grouping_verdict(summary: dict[str, Any], manifest: list[dict[str, str]] | None) -> tuple[str, bool]:
    """One sentence on how groups were kept apart and on duplicates, and whether it warrants a warning."""
    mode = _mode(summary)
    bad = False
    if mode:
        groups = _group_count(summary.get("groups"))
        text = f"Each {mode} group stays in one split" + (f" ({groups} groups)" if groups else "")
        spanning = _groups_in_several_splits(manifest)
        if spanning:
            text += (
                f"; yet {spanning} group{' has' if spanning == 1 else 's have'} files in more than one split"
            )
            bad = True
        elif spanning == 0:
            text += "; no group has files in two splits"
    else:
        text = (
            "Split image by image, not by group: near-identical images of one patient can sit on both "
            "sides (see the leakage check)"
        )
    duplicates, across = _duplicates_phrase(summary.get("duplicates"))
    return text + "." + duplicates, bad or across


def _mode(summary: dict[str, Any]) -> str | None:
    """How the split was grouped (``sequence``, ``file``, ...); ``None`` when image by image."""
    mode = summary.get("group_by") or (summary.get("grouping") or {}).get("mode")
    return str(mode) if mode and mode != "none" else None


def _groups_table(groups: Any) -> str | None:
    """Groups per class and split, from ``{split: {class: n}}``."""
    if not isinstance(groups, dict) or not groups or not all(isinstance(v, dict) for v in groups.values()):
        return None
    splits = list(groups)
    classes = list(dict.fromkeys(c for per in groups.values() for c in per))
    rows = [[name, *(groups[s].get(name, 0) for s in splits)] for name in classes]
    return html.table(["Class", *(html.SPLIT_TITLES.get(s, s) for s in splits)], rows)


def _manifest_part(run: RunArtifacts, manifest: list[dict[str, str]] | None) -> list[str]:
    """The manifest's files per split and class, checked against the summary's counts."""
    if manifest is None:
        problem = run.problems.get(SPLIT_MANIFEST.name)
        if problem:
            return [html.missing(f"{SPLIT_MANIFEST.name} is {problem}")]
        return [
            html.paragraph(f"{SPLIT_MANIFEST.name} is missing: no per-file record of the split.", "muted")
        ]
    counts = Counter((row.get("split", "?"), row.get("class", "?")) for row in manifest)
    splits = list(dict.fromkeys(s for s, _ in counts))
    classes = list(dict.fromkeys(c for _, c in counts))
    rows = [
        [
            html.SPLIT_TITLES.get(s, s),
            *(counts[(s, c)] for c in classes),
            sum(counts[(s, c)] for c in classes),
        ]
        for s in splits
    ]
    table = html.table(["Split", *classes, "Total"], rows)
    heading = f"Files per split and class ({SPLIT_MANIFEST.name})"
    recorded = (run.split_summary or {}).get("counts")
    if not isinstance(recorded, dict) or not all(isinstance(v, dict) for v in recorded.values()):
        return [html.heading(heading), table]
    if {(s, c): n for s, per in recorded.items() for c, n in per.items() if n} != dict(counts):
        disagrees = f"{SPLIT_MANIFEST.name} disagrees with the images per class of the data split:"
        return [html.paragraph(disagrees, "warning"), table]
    # The core's per-class table already says it; the manifest only confirms it file by file.
    return [
        html.paragraph(f"{SPLIT_MANIFEST.name} lists the same {len(manifest)} files, one row each.", "muted"),
        html.details(heading, table),
    ]


def groups_section(report: ReportContext) -> str:
    run = report.run
    if not is_folder_split_run(run):
        return ""
    manifest = run.read_csv(SPLIT_MANIFEST)
    summary = run.split_summary
    if summary is None:  # the core's section says why; the manifest alone still shows the split
        return "\n".join(_manifest_part(run, manifest))
    parts = [html.verdict(*grouping_verdict(summary, manifest))]
    table = _groups_table(summary.get("groups")) if _mode(summary) else None
    if table:
        parts += [html.heading("Groups per class and split"), table]
    grouping = summary.get("grouping") if isinstance(summary.get("grouping"), dict) else {}
    for warning in grouping.get("warnings") or []:
        parts.append(html.paragraph(f"Warning: {warning}", "warning"))
    duplicates = summary.get("duplicates") if isinstance(summary.get("duplicates"), dict) else {}
    examples = duplicates.get("examples") or duplicates.get("pairs") or []
    if examples:
        parts += [html.heading("Identical files (examples)"), html.structure(examples)]
    parts += _manifest_part(run, manifest)
    return "\n".join(parts)
