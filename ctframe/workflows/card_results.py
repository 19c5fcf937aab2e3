"""The model card's sections about the models' results: test metrics, calibration, the operating point,
conformal sets, external evaluations and subgroups.

Blocks that newer ctframe versions add to metrics.json (``calibration_fit``, ``conformal``,
``subgroups``) are shown when present, whatever their exact shape, and marked "not computed" when absent.
"""

from __future__ import annotations

from typing import Any

from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import (
    CORE,
    EXTERNAL_EVALUATION,
    METRICS,
)
from ctframe.workflows.card_text import cite, estimate, facts, number, safe, table

_CALIBRATION = {"ece": "ECE", "brier": "Brier", "log_loss": "log-loss", "nll": "log-loss"}


def models(run: RunArtifacts) -> dict[str, dict[str, Any]]:
    found = (run.metrics or {}).get("models")
    return {str(k): v for k, v in found.items() if isinstance(v, dict)} if isinstance(found, dict) else {}


def _metric_rows(level: dict[str, Any]) -> list[list[Any]]:
    found = level.get("metrics") if isinstance(level.get("metrics"), dict) else {}
    return [
        [entry.get("title", name) if isinstance(entry, dict) else name, estimate(entry)]
        for name, entry in found.items()
    ]


def results(run: RunArtifacts) -> list[str]:
    if not models(run):
        return [f"- No test results: {METRICS.name} is missing or holds no models."]
    confidence = (run.metrics or {}).get("bootstrap", {})
    lines = [
        cite(
            f"Intervals: {safe(confidence.get('confidence', '?'))} bootstrap "
            f"({safe(confidence.get('resamples', '?'))} resamples; {safe(confidence.get('method', ''))})",
            METRICS.name,
        ),
        "",
    ]
    for key, model in models(run).items():
        counts = model.get("test_class_counts") or {}
        lines += [
            cite(
                f"**{safe(model.get('title', key))}** (`{safe(key)}`), image level, "
                f"{number(model.get('test_samples'))} test images "
                f"({', '.join(f'{safe(k)} {safe(v)}' for k, v in counts.items())})",
                METRICS.name,
            ),
            "",
        ]
        lines += [*table(["metric", "value (CI)"], _metric_rows(model)), ""]
        group = model.get("group_level")
        if isinstance(group, dict):
            counts = group.get("class_counts") or {}
            lines += [
                cite(
                    f"Group level (unit {safe(group.get('unit', '?'))}, "
                    f"{number(group.get('groups'))} groups: "
                    f"{', '.join(f'{safe(k)} {safe(v)}' for k, v in counts.items())}; aggregated by "
                    f"{safe((group.get('aggregate') or {}).get('method', '?'))})",
                    METRICS.name,
                ),
                "",
            ]
            lines += [*table(["metric", "value (CI)"], _metric_rows(group)), ""]
        else:
            lines += ["Group level: not computed (the run's samples carry no groups).", ""]
    return lines


def _block(run: RunArtifacts, name: str) -> dict[str, Any]:
    """``name`` from metrics.json: the run's own block and each model's, keyed ``""`` and by model key."""
    found = {"": (run.metrics or {}).get(name)} | {key: model.get(name) for key, model in models(run).items()}
    return {key: value for key, value in found.items() if value is not None}


def calibration(run: RunArtifacts) -> list[str]:
    lines = []
    for key, model in models(run).items():
        for level, block in (("image", model), ("group", model.get("group_level") or {})):
            found = block.get("calibration") if isinstance(block, dict) else None
            if isinstance(found, dict):
                shown = "; ".join(
                    f"{_CALIBRATION.get(name, name)} {estimate(entry)}" for name, entry in found.items()
                )
                lines.append(cite(f"- `{safe(key)}`, {level} level: {shown}", METRICS.name))
    fits = _block(run, "calibration_fit")
    for key, fit in fits.items():
        lines += [
            cite(f"- Calibration fit{f' `{safe(key)}`' if key else ''}: {line}", METRICS.name)
            for line in facts(fit, limit=16)
        ]
    if not fits:
        lines.append(
            f"- Calibration fit (post-hoc recalibration): not computed (no calibration_fit in {METRICS.name})"
        )
    return lines or [f"- Calibration: not recorded ({METRICS.name} missing)"]


def operating_point(run: RunArtifacts) -> list[str]:
    lines = []
    for key, model in models(run).items():
        for level, block in (("image", model), ("group", model.get("group_level") or {})):
            choice = block.get("threshold") if isinstance(block, dict) else None
            if not isinstance(choice, dict):
                continue
            where = f"chosen on {choice['chosen_on']}" if choice.get("chosen_on") else "not chosen on data"
            extra = [
                line
                for name, value in choice.items()
                if name not in ("method", "value", "chosen_on", "note")
                for line in facts(value, name, limit=8)
            ]
            text = (
                f"- `{safe(key)}`, {level} level: threshold {number(choice.get('value'))} "
                f"(method {safe(choice.get('method', '?'))}; {safe(where)})"
            )
            if extra:
                text += "; " + "; ".join(extra)
            lines.append(cite(text, METRICS.name))
    return lines or [f"- Operating point: not recorded ({METRICS.name} missing)"]


def conformal(run: RunArtifacts) -> list[str]:
    blocks = _block(run, "conformal")
    lines = [
        cite(f"- {f'`{safe(key)}`: ' if key else ''}{line}", METRICS.name)
        for key, block in blocks.items()
        for line in facts(block, limit=24)
    ]
    return lines or [f"- Conformal prediction sets: not computed (no conformal block in {METRICS.name})"]


def external(run: RunArtifacts) -> list[str]:
    lines = []
    for name, record in run.external.items():
        where = f"{EXTERNAL_EVALUATION.filename(name)}/{METRICS.name}"
        for key, model in (record.get("models") or {}).items():
            if isinstance(model, dict):
                shown = "; ".join(f"{row[0]} {row[1]}" for row in _metric_rows(model))
                lines.append(
                    cite(
                        f"- {safe(name)}, `{safe(key)}` ({number(model.get('test_samples'))} images): "
                        f"{shown}",
                        where,
                    )
                )
    return lines or ["- External evaluations: none (`ctframe evaluate RUN --data DATA` adds one)"]


def subgroups(run: RunArtifacts) -> list[str]:
    """Subgroup results: a subgroups block in metrics.json, or a subgroup file the layout declares."""
    lines = [
        cite(f"- {f'`{safe(key)}`: ' if key else ''}{line}", METRICS.name)
        for key, block in _block(run, "subgroups").items()
        for line in facts(block, limit=30)
    ]
    folders = [run.path, *EXTERNAL_EVALUATION.find(run.path).values()]  # the run, then its evaluations
    for entry in (entry for entry in CORE if entry.name.startswith("subgroup") and entry.format == "json"):
        for folder in folders:
            files = entry.find(folder) if entry.placeholder else {"": entry.path(folder)}
            for path in files.values():
                name = path.relative_to(run.path).as_posix()
                record = run.read_json(name)
                if record:
                    lines += [cite(f"- {line}", name) for line in facts(record, limit=30)]
    return lines or ["- Subgroup results: not computed (no subgroup file or block in this run)"]
