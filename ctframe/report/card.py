"""The report's model card section: a summary of the run's model_card.md and the card itself, folded.

The card is written by ``ctframe card`` (ctframe.workflows.card, a floor above the report), so the
report reads the file rather than building the card: ``ctframe report`` after ``ctframe card`` shows it.
"""

from __future__ import annotations

from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts
from ctframe.storage.layout import MODEL_CARD

TO_COMPLETE = "[to be completed]"


def card_view(run: RunArtifacts) -> str:
    text = run.read_text(MODEL_CARD)
    if text is None:
        problem = run.problems.get(MODEL_CARD.name)
        if problem:
            return html.missing(f"{MODEL_CARD.name} is {problem}")
        return html.paragraph(  # not a fault: the card is written on request
            f"No model card yet: `ctframe card RUN` writes {MODEL_CARD.name} into this folder.", "muted"
        )
    headings = [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]
    open_items = [
        heading
        for heading, body in zip(headings, text.split("\n## ")[1:], strict=False)
        if TO_COMPLETE in body
    ]
    summary = f"The model card is {MODEL_CARD.name} in this folder ({len(headings)} sections)"
    summary += f"; to be completed: {', '.join(open_items)}." if open_items else "; every section is filled."
    return "\n".join(
        [
            html.verdict(summary, bad=bool(open_items)),
            html.paragraph("Sections: " + ", ".join(headings)),
            html.details(f"The card ({MODEL_CARD.name}, Markdown)", html.preformatted(text)),
        ]
    )
