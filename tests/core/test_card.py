"""The model card (ctframe card): every section, each item citing its file, nothing identifying."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ctframe.commands.main import main
from ctframe.report.artifacts import read_run
from ctframe.report.card import card_view
from ctframe.storage.layout import METRICS, MODEL_CARD
from ctframe.workflows.card import CHECKLISTS, RUN_SECTIONS, USER_SECTIONS
from ctframe.workflows.card_text import TO_COMPLETE, safe
from tests.core.test_report import tiny_run

HEADINGS = [
    USER_SECTIONS[0],
    *(title for title, _ in RUN_SECTIONS),
    *USER_SECTIONS[1:],
    "Reporting checklists",
]
ABSOLUTE_PATH = re.compile(r"(^|[\s(`'\"=])(/[A-Za-z0-9_.-]+/|[A-Za-z]:\\)")


@pytest.fixture(scope="module")
def card_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("card-run"))


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_card_lists_every_section_cites_its_files_and_marks_missing_input(card_run):
    assert main(["card", str(card_run), "--force"]) == 0  # the module shares one run
    text = MODEL_CARD.path(card_run).read_text(encoding="utf-8")
    found = sections(text)
    assert list(found) == HEADINGS
    for heading in USER_SECTIONS:  # nothing given: each part a person writes is marked
        assert TO_COMPLETE in found[heading]
    for cited in (
        "(metrics.json)",
        "(split_summary.json)",
        "(recipe.toml)",
        "(environment.json)",
        "(integrity.json)",
        "models/finetuned.json",
        "history_finetuned.csv",
    ):
        assert cited in text, cited
    # the numbers are the run's: image and group level, with intervals (fp32 metrics, 3 decimals)
    model = json.loads(METRICS.path(card_run).read_text())["models"]["finetuned"]
    accuracy = model["metrics"]["accuracy"]
    assert (
        f"{accuracy['value']:.3f} (CI {accuracy['ci_low']:.3f}-{accuracy['ci_high']:.3f})" in found["Results"]
    )
    group = model["group_level"]["metrics"]["accuracy"]
    assert f"{group['value']:.3f} (CI {group['ci_low']:.3f}-{group['ci_high']:.3f})" in found["Results"]
    assert "not computed" in found["Conformal prediction"]
    assert "none" in found["External evaluations"]
    assert "sha256" in found["Data"] and "split_manifest.csv" in found["Data"]
    rows = found["Reporting checklists"].count("\n| ") - 1  # one row per mapped section, plus the header
    assert rows == len(CHECKLISTS) and {row[0] for row in CHECKLISTS} <= set(HEADINGS)


def test_the_card_holds_no_absolute_path(card_run):
    assert main(["card", str(card_run), "--force"]) == 0  # the module shares one run
    text = MODEL_CARD.path(card_run).read_text(encoding="utf-8")
    assert str(card_run) not in text and str(card_run.parent.parent) not in text
    assert ABSOLUTE_PATH.search(text) is None, ABSOLUTE_PATH.search(text)
    assert "`demo` (name only)" in text  # the data folder by its name alone


def test_the_intended_use_text_fills_its_sections_and_o_writes_elsewhere(card_run, tmp_path):
    given = tmp_path / "about.md"
    given.write_text("## Intended use\nTriage research on the demo data.\n\n## Contact\nthe imaging team\n")
    output = tmp_path / "card.md"
    assert main(["card", str(card_run), "--intended-use", str(given), "-o", str(output)]) == 0
    found = sections(output.read_text(encoding="utf-8"))
    assert (
        "Triage research on the demo data." in found["Intended use"]
        and TO_COMPLETE not in found["Intended use"]
    )
    assert "the imaging team" in found["Contact"] and TO_COMPLETE not in found["Contact"]
    assert TO_COMPLETE in found["Limitations"] and TO_COMPLETE in found["Ethical considerations"]


def test_a_plain_text_file_is_the_intended_use(card_run, tmp_path):
    given = tmp_path / "use.md"
    given.write_text("Research use only.\n")
    output = tmp_path / "card.md"
    assert main(["card", str(card_run), "--intended-use", str(given), "-o", str(output)]) == 0
    assert "Research use only." in sections(output.read_text())["Intended use"]


def test_blocks_added_later_and_external_evaluations_are_shown(card_run, tmp_path):
    run = shutil.copytree(card_run, tmp_path / "run")
    metrics = json.loads(METRICS.path(run).read_text())
    external = run / "external" / "again"
    external.mkdir(parents=True)
    METRICS.path(external).write_text(json.dumps(metrics))
    metrics["conformal"] = {
        "alpha": 0.1,
        "coverage": {"COVID": {"value": 0.91, "ci_low": 0.8, "ci_high": 0.97}},
    }
    metrics["models"]["finetuned"]["calibration_fit"] = {"method": "platt", "ece_after": 0.05}
    METRICS.path(run).write_text(json.dumps(metrics))
    assert main(["card", str(run), "--force"]) == 0  # the copy holds the earlier card
    found = sections(MODEL_CARD.path(run).read_text())
    assert "coverage.COVID: 0.910 (CI 0.800-0.970)" in found["Conformal prediction"]
    assert "method: platt" in found["Calibration"] and "not computed" not in found["Calibration"]
    assert "(external/again/metrics.json)" in found["External evaluations"]


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["card", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "not a run directory" in error and len(error.splitlines()) == 1
    assert not MODEL_CARD.path(tmp_path).exists()


def test_the_report_section_summarises_the_card(card_run, tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    assert "No model card yet" in card_view(read_run(empty))
    assert main(["card", str(card_run), "--force"]) == 0  # the module shares one run
    view = card_view(read_run(card_run))
    assert MODEL_CARD.name in view and "to be completed: Intended use" in view and "<pre>" in view


def test_paths_keep_only_their_last_part():
    assert safe("root /home/someone/data/ct") == "root ct"
    assert safe("C:\\Users\\someone\\scans") == "scans"
    assert safe("Methods / Results, a/b") == "Methods / Results, a/b"
