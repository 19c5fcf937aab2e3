"""Recalibration before / after and conformal prediction sets, from ``metrics.json``; the section is left
out ("" returned) when no model was recalibrated and no conformal rule was fitted."""

from __future__ import annotations

from typing import Any

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts
from ctframe.report.sections.results import estimate

MEASURES = (("ece", "ECE"), ("brier", "Brier Score"), ("nll", "Log-loss"))


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def _change(test: dict[str, Any], name: str) -> str:
    before, after = (test.get("before") or {}).get(name), (test.get("after") or {}).get(name)
    return f"{estimate(before)} → {estimate(after)}"


def _recalibration(models: dict[str, Any]) -> list[str]:
    fitted = [m for m in models.values() if isinstance((m.get("calibration_fit") or {}).get("test"), dict)]
    if not fitted:
        return []
    rows = []
    for model in fitted:
        fit = model["calibration_fit"]
        parameters = ", ".join(f"{k} {_number(v)}" for k, v in (fit.get("parameters") or {}).items())
        validation = fit.get("validation_nll") or {}
        test = fit["test"]
        rows.append(
            [
                model.get("title", model.get("key", "?")),
                f"{fit.get('method', '?')} ({parameters})" if parameters else fit.get("method", "?"),
                f"{_number(validation.get('before'))} → {_number(validation.get('after'))}",
                *(_change(test, name) for name, _ in MEASURES),
            ]
        )
    notes = [
        html.paragraph(f"{m.get('title', '?')}: {m['calibration_fit']['note']}", "warning")
        for m in fitted
        if m["calibration_fit"].get("note")
    ]
    return [
        html.heading("Recalibration"),
        html.paragraph(
            "Fitted on the validation predictions only; test measures before → after, with intervals. The "
            "test metrics, threshold and predictions files above use the recalibrated probabilities, and so "
            "do predict and evaluate with this model."
        ),
        html.table(["Model", "Method", "Validation log-loss", *(t for _, t in MEASURES)], rows),
        *notes,
    ]


def _proportion(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "n/a"
    text = estimate(entry)
    return f"{text} [{entry.get('count')}/{entry.get('n')}]" if entry.get("n") is not None else text


def _conformal(models: dict[str, Any]) -> list[str]:
    fitted = [m for m in models.values() if isinstance(m.get("conformal"), dict)]
    if not fitted:
        return []
    classes = list(dict.fromkeys(c for m in fitted for c in (m["conformal"].get("per_class") or {})))
    rows = []
    for model in fitted:
        rule = model["conformal"]
        per_class = rule.get("per_class") or {}
        rows.append(
            [
                model.get("title", model.get("key", "?")),
                *(_proportion((per_class.get(c) or {}).get("coverage")) for c in classes),
                _proportion(rule.get("abstention_rate")),
                _proportion(rule.get("empty_rate")),
                _proportion(rule.get("accuracy_decided")),
            ]
        )
    first = fitted[0]["conformal"]
    return [
        html.heading("Conformal prediction sets"),
        html.paragraph(
            f"Split conformal ({first.get('method', '?')}, alpha {first.get('alpha')}, target coverage "
            f"{first.get('target_coverage')}), fitted on validation: a test image's set holds every class it "
            "could be at that level; more than one class is an abstention, an empty set is no answer. "
            f"{first.get('interval', '')}."
        ),
        html.table(
            ["Model", *(f"Coverage {c}" for c in classes), "Abstention", "Empty", "Accuracy when decided"],
            rows,
        ),
    ]


def uncertainty(run: RunArtifacts) -> str:
    models = (run.metrics or {}).get("models") or {}
    models = {k: m for k, m in models.items() if isinstance(m, dict)}
    parts = _recalibration(models) + _conformal(models)
    return "\n".join(parts)
