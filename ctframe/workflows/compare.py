"""``ctframe compare RUN_DIR...``: runs side by side, from their metrics.json and recipe.toml."""

from __future__ import annotations

import csv
import hashlib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from ctframe.base.errors import RunError
from ctframe.storage.layout import METRICS, PREDICTIONS, RECIPE

COMPARABLE = {
    "positive_class": "positive class (precision, recall and F1 measure different things)",
    "classes": "classes",
    "test_set": "test set (their numbers come from different images)",
    "seed": "seed (a difference may be the luck of the draw)",
}
"""Facts that runs side by side should share, and why a difference matters."""


@dataclass(frozen=True)
class RunSummary:
    run: str
    path: Path
    facts: dict[str, Any] = field(default_factory=dict)
    """Key recipe facts: the component of each section, seed, threshold method, positive class."""
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Model key -> {"title", metric name -> {"title", "value", "ci_low", "ci_high"}}."""
    problem: str | None = None


def _recipe_facts(path: Path) -> dict[str, Any]:
    try:
        recipe = tomllib.loads(RECIPE.path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    facts: dict[str, Any] = {}
    for section, value in recipe.items():
        if isinstance(value, dict) and "component" in value:
            facts[section] = value["component"]
    run = recipe.get("run", {})
    if isinstance(run, dict) and "seed" in run:
        facts["seed"] = run["seed"]
    evaluation = recipe.get("evaluation", {})
    if isinstance(evaluation, dict):
        facts["threshold"] = evaluation.get("threshold", "fixed")
        facts["aggregate"] = evaluation.get("aggregate", "mean")
    return facts


def _test_set(path: Path, keys: Sequence[str]) -> str | None:
    """ "<n> samples, ids <sha256 prefix>" of the first model's test predictions, or None without a file."""
    for key in keys:
        try:
            with PREDICTIONS.path(path, key).open(encoding="utf-8", newline="") as handle:
                ids = sorted(row.get("sample_id") or "" for row in csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        digest = hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:12]
        return f"{len(ids)} samples, ids {digest}"
    return None


def summarise_run(path: Path) -> RunSummary:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path} is not a run directory; pass folders that `ctframe run` created")
    facts = _recipe_facts(path)
    try:
        metrics = json.loads(METRICS.path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        problem = (
            f"no {METRICS.name}"
            if isinstance(error, FileNotFoundError)
            else f"unreadable {METRICS.name}: {error}"
        )
        return RunSummary(path.name, path, facts, problem=problem)
    if metrics.get("positive_class") is not None:
        facts["positive_class"] = metrics["positive_class"]
    if isinstance(metrics.get("class_names"), list):
        facts["classes"] = ", ".join(map(str, metrics["class_names"]))
    test_set = _test_set(path, list(metrics.get("models") or {}))
    if test_set:
        facts["test_set"] = test_set
    models: dict[str, dict[str, Any]] = {}
    for key, model in (metrics.get("models") or {}).items():
        entries = {
            **(model.get("metrics") or {}),
            **{
                name: {"title": "ECE" if name == "ece" else "Brier Score", **value}
                for name, value in (model.get("calibration") or {}).items()
            },
        }
        models[key] = {
            "title": model.get("title", key),
            **entries,
            **_group_entries(model.get("group_level")),
        }
    return RunSummary(path.name, path, facts, models)


def _group_entries(level: Any) -> dict[str, Any]:
    """The group-level metrics as extra rows, ``per_<unit>.<name>`` titled "<title> per <unit>"."""
    if not isinstance(level, dict):
        return {}
    unit = str(level.get("unit", "group"))
    named = {
        **(level.get("metrics") or {}),
        **{
            n: {"title": "ECE" if n == "ece" else "Brier Score", **v}
            for n, v in (level.get("calibration") or {}).items()
        },
    }
    return {
        f"per_{unit}.{name}": {**entry, "title": f"{entry.get('title', name)} per {unit}"}
        for name, entry in named.items()
        if isinstance(entry, dict)
    }


def _cell(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
        return "n/a"
    text = f"{entry['value']:.3f}"
    if isinstance(entry.get("ci_low"), int | float) and isinstance(entry.get("ci_high"), int | float):
        text += f"\n({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"
    return text


@dataclass(frozen=True)
class RunComparison:
    runs: tuple[RunSummary, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": [
                {
                    "run": r.run,
                    "path": str(r.path),
                    "facts": r.facts,
                    "models": r.models,
                    "problem": r.problem,
                }
                for r in self.runs
            ],
            "warnings": self.warnings(),
        }

    def metrics_table(self) -> Table:
        """One column per (run, model), one row per metric: runs stay side by side however many metrics."""
        titles: dict[str, str] = {}
        for run in self.runs:
            for model in run.models.values():
                for name, entry in model.items():
                    if name != "title" and isinstance(entry, dict):
                        titles.setdefault(name, entry.get("title", name))
        table = Table(
            title="Test metrics by run", caption="value (confidence interval), from each run's metrics.json"
        )
        table.add_column("Metric", style="bold")
        columns: list[tuple[RunSummary, dict[str, Any] | None]] = []
        for run in self.runs:
            for model in run.models.values() or [None]:
                columns.append((run, model))
                heading = f"{run.run}\n{model['title'] if model else run.problem or 'no models'}"
                table.add_column(heading, justify="right", overflow="fold")
        for name, title in titles.items():
            table.add_row(title, *(_cell(model.get(name)) if model else "" for _, model in columns))
        return table

    def facts_table(self) -> Table:
        keys = list(dict.fromkeys(k for run in self.runs for k in run.facts))
        table = Table(title="Recipes")
        table.add_column("Fact", style="bold")
        for run in self.runs:
            table.add_column(run.run, overflow="fold")
        for key in keys:
            table.add_row(key, *(str(run.facts.get(key, "")) for run in self.runs))
        return table

    def warnings(self) -> list[str]:
        """One line per fact (positive class, classes, test set, seed) that the runs do not share."""
        said = []
        for fact, why in COMPARABLE.items():
            values = {run.run: run.facts.get(fact) for run in self.runs if not run.problem}
            if len({str(v) for v in values.values()}) > 1:
                listed = "; ".join(
                    f"{run}: {value if value is not None else 'unknown'}" for run, value in values.items()
                )
                said.append(f"the runs differ in {why}: {listed}")
        return said

    def __rich__(self) -> Group:
        return Group(self.metrics_table(), self.facts_table())


def compare_runs(run_dirs: Sequence[Path]) -> RunComparison:
    """Summaries of the given runs; print the result with rich, or use ``as_dict()`` for JSON."""
    return RunComparison(tuple(summarise_run(Path(path)) for path in run_dirs))
