"""Sections that restate the run's records: the overview, the recipe, the environment, the log."""

from __future__ import annotations

from typing import Any

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import ENVIRONMENT, LOG, METRICS, RECIPE, SPLIT_SUMMARY


def _precision(entry: Any) -> str | None:
    """``{"requested", "resolved", "reason"}`` of the environment's ``precision`` as one phrase."""
    if not isinstance(entry, dict) or not entry.get("resolved"):
        return None
    text = str(entry["resolved"])
    details = [
        f"requested {entry['requested']}" if entry.get("requested") else "",
        str(entry.get("reason") or ""),
    ]
    details = [d for d in details if d]
    return text + (f" ({'; '.join(details)})" if details else "")


def overview(run: RunArtifacts) -> str:
    facts: list[list[Any]] = [["run directory", str(run.path)]]
    if run.status:
        facts.append(["status", run.status.get("state", "?")])
        if run.status.get("error"):
            facts.append(["error", run.status["error"]])
    if run.class_names:
        facts.append(["classes", ", ".join(run.class_names)])
    unknown = f"unknown ({METRICS.name} and {SPLIT_SUMMARY.name} missing)"
    facts.append(["positive class", run.positive_class or unknown])
    facts.append(["models", ", ".join(f"{run.title(k)} ({k})" for k in run.model_keys) or "none found"])
    environment = run.environment or {}
    if environment.get("device"):
        facts.append(["device", environment["device"]])
    precision = environment.get("precision") if isinstance(environment.get("precision"), dict) else {}
    for use in ("training", "evaluation"):
        phrase = _precision(precision.get(use))
        if phrase:
            facts.append([f"{use} precision", phrase])
    if environment.get("torch_threads") is not None:
        facts.append(["torch threads", environment["torch_threads"]])
    parts = [html.table(["item", "value"], facts)]
    if run.problems:
        parts.append(html.table(["file", "problem"], [[name, why] for name, why in run.problems.items()]))
    return "\n".join(parts)


def recipe(run: RunArtifacts) -> str:
    if run.recipe is None:
        return html.missing(f"{RECIPE.name} is missing.")
    return html.paragraph("The recipe as resolved for this run (defaults filled in):") + html.preformatted(
        run.recipe
    )


def environment(run: RunArtifacts) -> str:
    if run.environment is None:
        return html.missing(f"{ENVIRONMENT.name} is missing.")
    return html.structure(run.environment)


def log(run: RunArtifacts) -> str:
    if run.log_tail is None:
        return html.missing(f"{LOG.name} is missing.")
    return html.paragraph(f"Last {len(run.log_tail)} lines of {LOG.name}:", "muted") + html.preformatted(
        "\n".join(run.log_tail)
    )
