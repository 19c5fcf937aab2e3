"""The engine end to end with the toy plugin: run directory contents, seeding, resume, interrupts."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest

from ctframe.commands.main import main
from ctframe.registry.recipe import load_recipe


def _run(recipe: Path, output: Path, *extra: str) -> Path:
    assert main(["run", str(recipe), "--output", str(output), *extra]) == 0
    (run_dir,) = [p for p in output.iterdir() if p.is_dir()]
    return run_dir


def test_run_writes_a_complete_run_directory(toy_site, toy_recipe, tmp_path):
    run_dir = _run(toy_recipe, tmp_path / "runs")
    assert run_dir.name.startswith("toy-")
    names = {p.name for p in run_dir.iterdir()}
    expected = {"recipe.toml", "environment.json", "run.log", "status.json", "split_summary.json"}
    assert expected <= names
    assert {"metrics.json", "predictions_toy.csv", "report.html"} <= names
    assert not [n for n in names if n.endswith(".tmp")]

    resolved = tomllib.loads((run_dir / "recipe.toml").read_text())
    assert resolved["trainer"] == {"component": "toy_trainer", "epochs": 20, "lr": 0.05}
    assert resolved["dataset"]["samples"] == 32 and resolved["dataset"]["size"] == 8  # defaults filled in
    assert load_recipe(run_dir / "recipe.toml").trainer.options.epochs == 20  # and it re-validates

    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["seed"] == 7 and environment["device"] == "cpu"
    assert environment["packages"]["torch"] and "toy" in environment["plugins"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    assert "toy epoch 20" in (run_dir / "run.log").read_text()
    summary = json.loads((run_dir / "split_summary.json").read_text())
    assert summary["sizes"] == {"train": 32, "val": 32, "test": 32} and summary["positive_class"] == "bright"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "toy" in json.dumps(metrics)
    with (run_dir / "predictions_toy.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32
    correct = sum(row["true_class"] == row["predicted_class"] for row in rows)
    assert correct / len(rows) > 0.75  # it really learned


def test_same_seed_same_predictions_other_seed_differs(toy_site, toy_recipe, tmp_path):
    first = _run(toy_recipe, tmp_path / "a")
    second = _run(toy_recipe, tmp_path / "b")
    third = _run(toy_recipe, tmp_path / "c", "--set", "run.seed=8")
    read = lambda run: (run / "predictions_toy.csv").read_text()  # noqa: E731
    assert read(first) == read(second)
    assert read(first) != read(third)


def test_run_name_and_output_from_the_recipe(toy_site, toy_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(toy_recipe), "--set", "run.name=baseline", "--set", "trainer.epochs=1"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("baseline-")


def test_validate_reports_what_it_checked(toy_site, toy_recipe, capsys):
    assert main(["validate", str(toy_recipe)]) == 0
    output = capsys.readouterr().out
    assert "32 train / 32 val / 32 test" in output and "positive class 'bright'" in output
    assert output.strip().endswith("OK")


def test_interrupt_leaves_a_resumable_run(toy_site, toy_recipe, tmp_path, monkeypatch, capsys):
    import toy_ctframe

    def interrupted_fit(self, model, data, context):
        raise KeyboardInterrupt

    monkeypatch.setattr(toy_ctframe.ToyTrainer, "fit", interrupted_fit)
    assert main(["run", str(toy_recipe), "--output", str(tmp_path / "runs")]) == 130
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    assert "resume with: ctframe run --resume" in (run_dir / "run.log").read_text()
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(toy_site))
    monkeypatch.setenv("CTFRAME_PLUGINS", "toy")
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    assert (run_dir / "report.html").is_file()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda run: None, "this run already completed"),
        (lambda run: (run / "recipe.toml").unlink(), "not a run directory (no recipe.toml)"),
    ],
)
def test_resume_errors(toy_site, toy_recipe, tmp_path, capsys, setup, message):
    run_dir = _run(toy_recipe, tmp_path / "runs", "--set", "trainer.epochs=1")
    setup(run_dir)
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 2
    assert message in capsys.readouterr().err


def test_resume_takes_no_recipe(toy_site, toy_recipe, tmp_path, capsys):
    assert main(["run", str(toy_recipe), "--resume", str(tmp_path)]) == 2
    assert "--resume takes only the run directory" in capsys.readouterr().err


def test_internal_failure_is_one_line_and_exit_code_1(toy_site, toy_recipe, tmp_path, monkeypatch, capsys):
    import toy_ctframe

    def broken_fit(self, model, data, context):
        raise ZeroDivisionError("bug in a plugin")

    monkeypatch.setattr(toy_ctframe.ToyTrainer, "fit", broken_fit)
    assert main(["run", str(toy_recipe), "--output", str(tmp_path / "runs")]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("internal error: ZeroDivisionError: bug in a plugin")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert "Traceback" in (run_dir / "run.log").read_text()  # the details go to the log


def test_component_checks_fail_before_any_run_directory(toy_site, toy_recipe, tmp_path, capsys):
    output = tmp_path / "runs"
    assert (
        main(["run", str(toy_recipe), "--output", str(output), "--set", "dataset.require_file=labels.csv"])
        == 2
    )
    missing = toy_recipe.parent / "labels.csv"
    assert (
        capsys.readouterr().err.strip()
        == f"error: {missing} does not exist; create it or drop dataset.require_file"
    )
    assert not output.exists()
    assert main(["validate", str(toy_recipe), "--set", "dataset.require_file=labels.csv"]) == 2
    missing.write_text("id,label\n")
    assert main(["validate", str(toy_recipe), "--set", "dataset.require_file=labels.csv"]) == 0


def test_quick_validation_runs_only_the_component_checks(toy_site, toy_recipe, capsys):
    assert main(["validate", "--quick", str(toy_recipe)]) == 0
    output = capsys.readouterr().out
    assert "component checks passed" in output and "train /" not in output
    assert main(["validate", "--quick", str(toy_recipe), "--set", "dataset.require_file=nope.csv"]) == 2


def test_report_refuses_a_folder_no_run_created(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written into someone else's folder


def test_unwritable_output_is_a_one_line_user_error(toy_site, toy_recipe, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(toy_recipe), "--output", str(blocker / "runs")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: Not a directory: ")
    assert error.endswith("check the path and its permissions")
    assert "\n" not in error
