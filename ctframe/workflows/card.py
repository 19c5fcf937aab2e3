"""``ctframe card RUN``: a model card in Markdown, filled from the run directory's files.

Every item names the file it came from. What only a person can say (intended use, limitations,
ethical considerations, contact) comes from an optional Markdown file (``--intended-use``); whatever it
does not give is marked ``[to be completed]``. Nothing identifying reaches the card: paths keep only
their last part (:func:`ctframe.workflows.card_text.safe`) and no sample or group id is printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ctframe.base.errors import DataError, RunError
from ctframe.report.artifacts import RunArtifacts, read_run
from ctframe.storage.files import write_text
from ctframe.storage.layout import MODEL_CARD, RECIPE
from ctframe.storage.modelfile import models_of_run, read_model_info
from ctframe.storage.outputs import claim_file
from ctframe.workflows import card_data, card_results, card_training
from ctframe.workflows.card_text import TO_COMPLETE, safe, table

USER_SECTIONS = ("Intended use", "Limitations", "Ethical considerations", "Contact")
"""The parts a person writes; the input file gives them as ``## <title>`` sections."""

Section = Callable[[RunArtifacts], list[str]]
RUN_SECTIONS: tuple[tuple[str, Section], ...] = (
    ("Data", card_data.data),
    ("Leakage check and shortcut audits", card_data.leakage),
    ("Model and training", card_training.training),
    ("Results", card_results.results),
    ("Calibration", card_results.calibration),
    ("Operating point", card_results.operating_point),
    ("Conformal prediction", card_results.conformal),
    ("External evaluations", card_results.external),
    ("Subgroup results", card_results.subgroups),
    ("Software environment", card_training.environment),
)
"""(title, builder) of the sections filled from the run's files, in card order."""

CHECKLISTS = (
    (
        "Intended use",
        "Introduction: objectives; Discussion: usability (see checklist)",
        "4 Objectives; 39 Implications for practice",
    ),
    (
        "Data",
        "Methods: data sources, participants, sample size (see checklist)",
        "7 Data sources; 19 Data partitions; 20 Level of partition disjointness",
    ),
    (
        "Leakage check and shortcut audits",
        "Methods: data preparation; training versus evaluation (see checklist)",
        "10 Selection of data subsets; 20 Level of partition disjointness",
    ),
    (
        "Model and training",
        "Methods: analytical methods, model type and building (see checklist)",
        "22 Model description; 24 Initialisation; 25 Training details; 26 Selection of final model",
    ),
    (
        "Results",
        "Results: model performance with uncertainty (see checklist)",
        "28 Performance metrics; 29 Uncertainty; 35 Performance on all partitions; 36 Estimates with CIs",
    ),
    (
        "Calibration",
        "Methods / Results: calibration and model updating (see checklist)",
        "28 Performance metrics (see checklist)",
    ),
    (
        "Operating point",
        "Methods: model output, decision threshold (see checklist)",
        "28 Performance metrics (see checklist)",
    ),
    (
        "Conformal prediction",
        "Methods: model output; uncertainty (see checklist)",
        "29 Uncertainty (see checklist)",
    ),
    (
        "External evaluations",
        "Methods / Results: evaluation in other data (see checklist)",
        "32 External validation",
    ),
    (
        "Subgroup results",
        "Methods: fairness; Results: performance in subgroups (see checklist)",
        "30 Robustness or sensitivity analysis (see checklist)",
    ),
    (
        "Software environment",
        "Open science: code availability (see checklist)",
        "23 Software, libraries and versions (see checklist)",
    ),
    ("Limitations", "Discussion: limitations (see checklist)", "38 Study limitations"),
    ("Ethical considerations", "Methods: ethical approval (see checklist)", "see checklist"),
)
"""Card section -> (TRIPOD+AI items, CLAIM items) it answers; CLAIM numbered as in its 2020 checklist."""

_HEADING = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)


def read_user_text(path: Path | None) -> dict[str, str]:
    """``--intended-use FILE``: ``## Intended use`` / ``## Limitations`` / ... sections; a file without
    any of those headings is the intended use as a whole."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path}: cannot read the card text ({error.__class__.__name__}); pass a UTF-8 Markdown file"
        ) from None
    parts = _HEADING.split(text)  # [before, title, body, title, body, ...]
    known = {title.lower(): title for title in USER_SECTIONS}
    found = {
        known[title.lower()]: body.strip()
        for title, body in zip(parts[1::2], parts[2::2], strict=True)
        if title.lower() in known and body.strip()
    }
    if not found and text.strip():
        found["Intended use"] = text.strip()
    return found


def card_text(run: RunArtifacts, user: dict[str, str] | None = None) -> str:
    user = user or {}
    title = run.path.name
    lines = [
        f"# Model card: {safe(title)}",
        "",
        "Each item names the run file it came from; `[to be completed]` marks what a person must add.",
        "",
    ]
    lines += _user_section("Intended use", user)
    for heading, build in RUN_SECTIONS:
        lines += [f"## {heading}", "", *build(run), ""]
    for heading in USER_SECTIONS[1:]:
        lines += _user_section(heading, user)
    lines += [
        "## Reporting checklists",
        "",
        "Which TRIPOD+AI and CLAIM items each section helps answer (titles shortened; check the numbers "
        "against the checklist you report to):",
        "",
    ]
    lines += table(["card section", "TRIPOD+AI", "CLAIM"], [list(row) for row in CHECKLISTS])
    return "\n".join(lines).rstrip() + "\n"


def _user_section(heading: str, user: dict[str, str]) -> list[str]:
    text = user.get(heading)
    body = (
        f"{text}\n\n(from the card text given to `ctframe card`)"
        if text
        else f"{TO_COMPLETE} (`ctframe card RUN --intended-use FILE.md`, with a `## {heading}` section)"
    )
    return [f"## {heading}", "", body, ""]


def write_card(
    run_dir: Path, output: Path | None = None, intended_use: Path | None = None, force: bool = False
) -> Path:
    """Write the card of ``run_dir`` to ``output`` (default: the run's model_card.md; an existing card
    only with ``force``); return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not RECIPE.path(run_dir).is_file():
        raise RunError(
            f"{run_dir} is not a run directory (no {RECIPE.name}); pass a folder `ctframe run` created"
        )
    for model in models_of_run(run_dir):  # a card must not describe an edited or damaged model file
        read_model_info(model)
    given = [intended_use] if intended_use else []
    target = claim_file(
        Path(output) if output else MODEL_CARD.path(run_dir), force=force, inputs=given, owned=(MODEL_CARD,)
    )
    user = read_user_text(intended_use)
    return write_text(target, card_text(read_run(run_dir), user))
