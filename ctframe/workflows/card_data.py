"""The model card's sections about the data: the data and its split, the leakage check and audits.

Each function returns Markdown lines; every item names the file it came from.
"""

from __future__ import annotations

import tomllib
from typing import Any

from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import INTEGRITY, RECIPE, SPLIT_SUMMARY
from ctframe.workflows.card_text import cite, facts, number, safe, table

SUMMARY = SPLIT_SUMMARY.name
_SPLITS = {"train": "training", "val": "validation", "test": "test"}
_SPLIT_KEYS = ("seed", "group_by", "test_fraction", "val_fraction", "reused_recorded_split")


def recipe_tables(run: RunArtifacts) -> dict[str, Any]:
    try:
        return tomllib.loads(run.recipe or "")
    except tomllib.TOMLDecodeError:
        return {}


def _count_table(counts: Any, classes: list[str]) -> list[str]:
    if not isinstance(counts, dict) or not all(isinstance(per, dict) for per in counts.values()):
        return []
    splits = list(counts)
    names = classes or list(dict.fromkeys(name for per in counts.values() for name in per))
    rows = [[name, *(counts[split].get(name, 0) for split in splits)] for name in names]
    rows.append(["all", *(sum(v for v in counts[split].values() if isinstance(v, int)) for split in splits)])
    return table(["class", *(_SPLITS.get(split, split) for split in splits)], rows)


def data(run: RunArtifacts) -> list[str]:
    recipe = recipe_tables(run)
    dataset = recipe.get("dataset") if isinstance(recipe.get("dataset"), dict) else {}
    summary = run.split_summary or {}
    lines = []
    if dataset.get("component"):
        lines.append(cite(f"- Dataset component: `{safe(dataset['component'])}`", RECIPE.name))
    root = dataset.get("root") or summary.get("root")
    if root:  # the folder's name only: the local path may name people or sites
        lines.append(cite(f"- Data folder: `{safe(root)}` (name only)", RECIPE.name))
    if run.class_names:
        positive = f"; positive class `{safe(run.positive_class)}`" if run.positive_class else ""
        lines.append(cite(f"- Classes: {', '.join(safe(n) for n in run.class_names)}{positive}", SUMMARY))
    if not summary:
        lines.append(f"- The split was not recorded: {SUMMARY} is missing.")
        return lines
    counts = _count_table(summary.get("counts"), run.class_names or [])
    if counts:
        lines += ["", cite("Images per class and split", SUMMARY) + ":", "", *counts]
    elif isinstance(summary.get("sizes"), dict):
        sizes = ", ".join(f"{_SPLITS.get(k, k)} {v}" for k, v in summary["sizes"].items())
        lines.append(cite(f"- Images per split: {sizes}", SUMMARY))
    groups = _count_table(summary.get("groups"), run.class_names or [])
    unit = summary.get("group_by") or dataset.get("group_by")
    if groups:
        lines += ["", cite(f"Groups (unit: {safe(unit or 'group')}) per class and split", SUMMARY) + ":", ""]
        lines += groups
    lines.append("")
    method = [
        f"{key} {safe(value)}"
        for key in _SPLIT_KEYS
        for value in [summary.get(key, dataset.get(key))]
        if value is not None
    ]
    if method:
        lines.append(cite(f"- Split method: {'; '.join(method)}", SUMMARY, RECIPE.name))
    lines += _hashes(run)
    return lines


def _hashes(run: RunArtifacts) -> list[str]:
    """The sha256 of the manifest (which file went to which split) and of the resolved recipe."""
    record = run.read_json(INTEGRITY) or {}
    files = record.get("files") if isinstance(record.get("files"), dict) else {}
    lines = []
    for name, entry in files.items():
        if isinstance(entry, dict) and entry.get("kind") in ("manifest", "recipe") and entry.get("sha256"):
            lines.append(
                cite(f"- {entry['kind']} `{safe(name)}` sha256 `{safe(entry['sha256'])}`", INTEGRITY.name)
            )
    return lines or [f"- Manifest hash: not recorded ({INTEGRITY.name} missing)"]


def leakage(run: RunArtifacts) -> list[str]:
    summary = run.split_summary or {}
    lines = []
    check = summary.get("leakage")
    if isinstance(check, dict):
        share, chance = check.get("share_above"), check.get("chance_share")
        verdict = "flagged" if check.get("loud") else "not flagged"
        lines.append(
            cite(
                f"- Near-duplicate leakage check: {number(check.get('count_above'))} of "
                f"{number(check.get('n_test'))} "
                f"test images have a training image above similarity {number(check.get('level'), 2)} "
                f"(share {number(share)}, expected by chance {number(chance)}): {verdict}",
                SUMMARY,
            )
        )
    else:
        lines.append(f"- Near-duplicate leakage check: not run (no leakage record in {SUMMARY})")
    duplicates = summary.get("duplicates")
    if isinstance(duplicates, dict):
        lines.append(
            cite(
                f"- Exact duplicates: {number(duplicates.get('sets'))} sets, "
                f"{number(duplicates.get('files'))} files, "
                f"{number(duplicates.get('across_classes'))} across classes",
                SUMMARY,
            )
        )
    grouping = summary.get("grouping")
    if isinstance(grouping, dict):
        warnings = grouping.get("warnings") or []
        told = (
            f"{len(warnings)} warning(s): " + "; ".join(safe(w) for w in warnings)
            if warnings
            else "no warnings"
        )
        lines.append(cite(f"- Grouping ({safe(grouping.get('mode', '?'))}): {told}", SUMMARY))
    audits = {key: value for key, value in summary.items() if "shortcut" in key or "audit" in key}
    for key, value in audits.items():
        lines += [cite(f"- {line}", SUMMARY) for line in facts(value, key, limit=12)]
    if not audits:
        lines.append(f"- Shortcut audit: not run for this run (nothing recorded in {SUMMARY})")
    return lines
