"""The data split any dataset gets, from ``split_summary.json`` alone.

The engine writes ``class_names``, ``positive_class`` and ``sizes``; a dataset adds what it likes
(``DataSplits.summary``). Of that, this section reads only what the contract names: ``counts``
(``{split: {class: images}}``) and ``lines`` (one-line facts). A dataset plugin explains the rest
(groups, duplicates, leakage) in sections of its own.
"""

from __future__ import annotations

from typing import Any

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import SPLIT_SUMMARY

TOLD = ("class_names", "positive_class")
"""Keys the overview already presents."""


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


def per_class_counts(summary: dict[str, Any]) -> dict[str, dict[str, int]] | None:
    """``counts`` when it has the contract's shape ``{split: {class: images}}``, else ``None``."""
    counts = summary.get("counts")
    if not isinstance(counts, dict) or not counts:
        return None
    if not all(isinstance(v, dict) and all(isinstance(n, int) for n in v.values()) for v in counts.values()):
        return None
    return counts


def split_sizes(summary: dict[str, Any]) -> dict[str, int]:
    """Images per split: the engine's ``sizes``, else the sums of ``counts``."""
    sizes = summary.get("sizes")
    if isinstance(sizes, dict) and all(isinstance(v, int) for v in sizes.values()):
        return dict(sizes)
    return {split: sum(per_class.values()) for split, per_class in (per_class_counts(summary) or {}).items()}


def split_sentence(run: RunArtifacts) -> str:
    """``160 images of 2 classes are split 40 / 20 / 100 (training / validation / test; ...)``."""
    sizes = split_sizes(run.split_summary or {})
    classes = len(run.class_names or []) or "?"
    if not sizes:
        return f"{classes} classes; the size of each split was not recorded."
    total = sum(sizes.values())
    shown = " / ".join(str(n) for n in sizes.values())
    names = " / ".join(html.SPLIT_TITLES.get(s, s).lower() for s in sizes)
    shares = " / ".join(_share(n, total) for n in sizes.values())
    return f"{total} images of {classes} classes are split {shown} ({names}; {shares})."


def _per_class_table(counts: dict[str, dict[str, int]], class_names: list[str]) -> str:
    splits = list(counts)
    classes = class_names or list(dict.fromkeys(c for per in counts.values() for c in per))
    rows: list[list[Any]] = [
        [name, *(counts[s].get(name, 0) for s in splits), sum(counts[s].get(name, 0) for s in splits)]
        for name in classes
    ]
    totals = [sum(counts[s].values()) for s in splits]
    rows.append(["all classes", *totals, sum(totals)])
    return html.table(["Class", *(html.SPLIT_TITLES.get(s, s) for s in splits), "Total"], rows)


def split(run: RunArtifacts) -> str:
    summary = run.split_summary
    if summary is None:
        problem = run.problems.get(SPLIT_SUMMARY.name)
        if problem:
            return html.missing(f"{SPLIT_SUMMARY.name} is {problem}")
        return html.missing(f"{SPLIT_SUMMARY.name} is missing: the split was not recorded.")
    parts = [html.verdict(split_sentence(run))]
    shown = [*TOLD, "sizes"]  # a key in another shape than the contract's stays in the record below
    counts = per_class_counts(summary)
    if counts:
        shown.append("counts")
        parts.append(html.heading("Images per class and split"))
        parts.append(_per_class_table(counts, list(run.class_names or [])))
    lines = summary.get("lines")
    if isinstance(lines, list):
        shown.append("lines")
        parts += [html.paragraph(str(line), "muted") for line in lines]
    rest = {k: v for k, v in summary.items() if k not in shown}
    if rest:
        parts.append(html.details(f"Everything else {SPLIT_SUMMARY.name} records", html.structure(rest)))
    return "\n".join(parts)
