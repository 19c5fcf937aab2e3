"""The report's subgroup section: ``subgroups.json`` (``--subgroups CSV`` of ``evaluate`` / ``metrics``)
as one table per variable, too-small subgroups listed with their counts, flagged values marked."""

from __future__ import annotations

from typing import Any

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts
from ctframe.report.sections.results import estimate
from ctframe.storage.layout import SUBGROUPS


def _intro(record: dict[str, Any]) -> str:
    rule = record.get("rule") or {}
    boot = record.get("bootstrap") or {}
    method = "cluster bootstrap (whole groups)" if record.get("grouped") else "stratified bootstrap"
    interval = (
        f"In brackets: {boot.get('confidence', 0.95):.0%} interval, {method}, {boot['resamples']} resamples "
        f"(seed {boot.get('seed')}), each subgroup resampled on its own rows."
        if boot.get("resamples")
        else "No confidence intervals (bootstrap disabled): nothing can be flagged."
    )
    return (
        f"Subgroups from {record.get('source', '?')}, each scored at the model's threshold on its own rows. "
        f"Too small (not scored): fewer than {rule.get('min_images', '?')} images, a class missing, or with "
        f"groups fewer than {rule.get('min_groups', '?')} groups. {interval} A * marks a value whose "
        "interval excludes the whole test set's value: one check per subgroup and metric, not "
        "corrected for the many checks made, so expect some flags by chance."
    )


def _cell(entry: dict[str, Any], kind: str, name: str) -> str:
    text = estimate((entry.get(kind) or {}).get(name))
    return text + (" *" if name in (entry.get("flagged") or []) else "")


def _variable(models: dict[str, Any], variable: str, unit: str) -> str:
    entries = [e for m in models.values() for e in (m.get("variables") or {}).get(variable, [])]
    names: dict[str, str] = {}
    for entry in entries:
        for name, value in (entry.get("metrics") or {}).items():
            names.setdefault(name, value.get("title", name) if isinstance(value, dict) else name)
    rows = []
    for model in models.values():
        for entry in (model.get("variables") or {}).get(variable, []):
            n = str(entry.get("images", "?"))
            if "groups" in entry:
                n += f" ({entry['groups']} groups)"
            if "too_small" in entry:
                cells = [f"too small: {entry['too_small']}", *[""] * (len(names) + 1)]
            else:
                cells = [_cell(entry, "metrics", name) for name in names]
                cells += [_cell(entry, "calibration", name) for name in ("ece", "brier")]
            rows.append([model.get("title", "?"), entry.get("value", "?"), n, *cells])
    columns = ["Model", variable, f"{unit.capitalize()}s", *names.values(), "ECE", "Brier"]
    return html.heading(f"By {variable}") + html.table(columns, rows)


def subgroups_view(run: RunArtifacts) -> str:
    """The section's html, or "" when the folder has no ``subgroups.json``."""
    record = run.read_json(SUBGROUPS)
    if not record:
        return ""
    models = record.get("models") or {}
    variables = list(dict.fromkeys(v for m in models.values() for v in (m.get("variables") or {})))
    flagged = sum(
        1
        for m in models.values()
        for entries in (m.get("variables") or {}).values()
        for e in entries
        if e.get("flagged")
    )
    said = (
        f"{flagged} subgroup result(s) flagged (counted per model and value), {len(variables)} variable(s)."
    )
    parts = [html.verdict(said, bad=bool(flagged)), html.paragraph(_intro(record))]
    unit = str(record.get("unit") or "image")
    parts += [_variable(models, variable, unit) for variable in variables]
    return "\n".join(parts)
