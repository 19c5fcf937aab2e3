"""The model card's sections about how the models were made: components, options, epochs and early
stopping, precision, and the software environment. Each function returns Markdown lines citing files.
"""

from __future__ import annotations

from typing import Any

from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import ENVIRONMENT, HISTORY, MODEL_INFO, RECIPE
from ctframe.workflows.card_data import recipe_tables
from ctframe.workflows.card_text import cite, safe

_STOPPING = ("epochs", "patience", "min_delta", "restore_best")
_SKIPPED_OPTIONS = ("plugin",)


def _options(block: Any) -> str:
    if not isinstance(block, dict):
        return ""
    options = block.get("options") if isinstance(block.get("options"), dict) else {}
    shown = ", ".join(
        f"{k}={safe(v)}" for k, v in options.items() if v is not None and k not in _SKIPPED_OPTIONS
    )
    return f"`{safe(block.get('component', '?'))}`" + (f" ({shown})" if shown else "")


def training(run: RunArtifacts) -> list[str]:
    recipe = recipe_tables(run)
    trainer = recipe.get("trainer") if isinstance(recipe.get("trainer"), dict) else {}
    lines = []
    for section in ("backbone", "head"):
        table_ = recipe.get(section)
        if isinstance(table_, dict):
            options = {k: v for k, v in table_.items() if k != "component"}
            shown = _options({"component": table_.get("component"), "options": options})
            lines.append(cite(f"- {section.capitalize()}: {shown}", RECIPE.name))
    if trainer:
        lines.append(
            cite(
                f"- Trainer: `{safe(trainer.get('component', '?'))}`, batch size "
                f"{safe(trainer.get('batch_size', '?'))}, precision {safe(trainer.get('precision', '?'))}",
                RECIPE.name,
            )
        )
    precision = (run.environment or {}).get("precision")
    if isinstance(precision, dict):
        for use in ("training", "evaluation"):
            if isinstance(precision.get(use), dict):
                lines.append(
                    cite(
                        f"- Precision used for {use}: {safe(precision[use].get('resolved'))}",
                        ENVIRONMENT.name,
                    )
                )
    for key in run.model_keys:
        info = run.read_json(MODEL_INFO.filename(key))
        if info:
            lines.append(
                cite(
                    f"- Model `{safe(key)}`: backbone {_options(info.get('backbone'))}, head "
                    f"{_options(info.get('head'))}",
                    MODEL_INFO.filename(key),
                )
            )
        lines.append(_epochs(run, key, trainer))
    return lines


def _epochs(run: RunArtifacts, key: str, trainer: dict[str, Any]) -> str:
    """Epochs run (history rows) against the recipe's limit and early stopping."""
    phase = trainer.get(key) if isinstance(trainer.get(key), dict) else trainer
    settings = {name: phase.get(name, trainer.get(name)) for name in _STOPPING}
    history = run.histories.get(key)
    if history is None:
        return f"- Model `{safe(key)}`: epochs run not recorded ({HISTORY.filename(key)} missing)"
    limit, patience = settings["epochs"], settings["patience"]
    ran = len(history)
    if patience is None:
        stopping = "no early stopping configured"
    elif isinstance(limit, int) and ran < limit:
        stopping = f"stopped early (patience {patience})"
    else:
        stopping = f"early stopping with patience {patience} did not trigger"
    best = ", best epoch restored" if settings["restore_best"] else ""
    return cite(
        f"- Model `{safe(key)}`: {ran} of {safe(limit if limit is not None else '?')} epochs run; "
        f"{stopping}{best if patience is not None else ''}",
        HISTORY.filename(key),
        RECIPE.name,
    )


def environment(run: RunArtifacts) -> list[str]:
    record = run.environment
    if not record:
        return [f"- Software environment: not recorded ({ENVIRONMENT.name} missing)"]
    lines = [
        cite(f"- {name}: {safe(record[name])}", ENVIRONMENT.name)
        for name in ("python", "platform", "device", "cuda", "gpu", "seed")
        if record.get(name) is not None
    ]
    for name in ("packages", "plugins"):
        if isinstance(record.get(name), dict):
            shown = ", ".join(f"{safe(k)} {safe(v)}" for k, v in record[name].items())
            lines.append(cite(f"- {name}: {shown}", ENVIRONMENT.name))
    git = record.get("git")
    if isinstance(git, dict) and git.get("commit"):
        lines.append(
            cite(
                f"- ctframe git commit {safe(git['commit'])}{' (modified)' if git.get('dirty') else ''}",
                ENVIRONMENT.name,
            )
        )
    return lines
