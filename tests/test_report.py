"""The run report and run comparison, built from a run directory of real files."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ctframe import Kind, Predictions, RunError
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.results import ModelPredictions
from ctframe.plugins import PLUGINS_ENV, build_registry
from ctframe.report import build_report
from ctframe.rundir import RunDirectory, write_json, write_text

CLASSES = ("COVID", "non-COVID")
SECTIONS = [
    "overview",
    "metrics",
    "training",
    "curves",
    "confusion",
    "calibration",
    "external",
    "split",
    "recipe",
    "environment",
    "log",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RECIPE = """metrics = ["accuracy", "precision", "recall", "f1", "roc_auc"]

[run]
seed = 42
output = "runs"

[dataset]
component = "folder_split"
root = "data/sample"

[backbone]
component = "tiny_cnn"

[trainer]
component = "two_phase"

[evaluation]
threshold = "youden"
"""


def _history(path: Path, phase: str, epochs: int, start_loss: float) -> None:
    columns = ["epoch", "phase", "train_loss", "val_loss", "val_accuracy", "lr", "images_per_s", "seconds"]
    rows = [
        [e, phase, start_loss / e, start_loss / e + 0.1, 0.5 + 0.4 * e / epochs, 1e-3, 80.0, 2.5]
        for e in range(1, epochs + 1)
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def _predictions(rng, labels: np.ndarray, separation: float, prefix: str) -> Predictions:
    scores = np.clip(rng.normal(0.5 + separation * (2 * labels - 1), 0.2), 0.001, 0.999)
    return Predictions(
        tuple(f"{prefix}{i}" for i in range(len(labels))), labels, np.stack([1 - scores, scores], 1)
    )


def make_run(folder: Path, monkeypatch, seed: int = 0, accuracy_shift: float = 0.0) -> Path:
    """A run directory holding every artifact the engine, dataset, trainer and evaluation write."""
    folder.mkdir(parents=True)
    run_dir = RunDirectory(folder)
    write_text(folder / "recipe.toml", RECIPE)
    write_json(
        folder / "environment.json",
        {
            "python": "3.11.9",
            "torch": "2.x",
            "device": "cpu",
            "seed": 42,
            "plugins": {"classification_metrics": "ctframe 0.1.0"},
        },
    )
    write_json(folder / "status.json", {"state": "completed", "updated": "2026-01-01T00:00:00+00:00"})
    write_json(
        folder / "split_summary.json",
        {
            "class_names": list(CLASSES),
            "positive_class": "non-COVID",
            "sizes": {"train": 40, "val": 20, "test": 100},
            "counts": {
                "train": {"COVID": 20, "non-COVID": 20},
                "val": {"COVID": 10, "non-COVID": 10},
                "test": {"COVID": 50, "non-COVID": 50},
            },
            "groups": {"train": 12, "val": 5, "test": 9},
            "duplicates": {
                "within_split": 1,
                "across_splits": 0,
                "pairs": [["Covid (128).png", "Covid (129).png"]],
            },
            "leakage": {"checked": True, "near_duplicates_test_vs_train": 0},
        },
    )
    with (folder / "split_manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "sha256", "class", "split", "group", "status"])
        for i in range(30):
            writer.writerow(
                [f"img{i}.png", f"{i:064x}", CLASSES[i % 2], ["train", "val", "test"][i % 3], i // 4, "ok"]
            )
    _history(folder / "history_initial.csv", "initial", 4, 0.9)
    _history(folder / "history_finetuned.csv", "finetune", 3, 0.5)
    write_text(folder / "run.log", "".join(f"line {i}: epoch done\n" for i in range(100)))
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    registry = build_registry()
    metrics = []
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"):
        component = registry.get(Kind.METRIC, name)
        metrics.append((name, component.factory(component.options(), None)))
    rng = np.random.default_rng(seed)
    val_labels, test_labels = (
        rng.integers(0, 2, 40),
        rng.integers(0, 2, 100),
    )  # both models see the same splits
    trained = [
        ModelPredictions(
            "initial",
            "Initial Model",
            _predictions(rng, val_labels, 0.1, "v"),
            _predictions(rng, test_labels, 0.1, "t"),
        ),
        ModelPredictions(
            "finetuned",
            "Fine-Tuned Model",
            _predictions(rng, val_labels, 0.2 + accuracy_shift, "v"),
            _predictions(rng, test_labels, 0.2 + accuracy_shift, "t"),
        ),
    ]
    data = EvaluationData(CLASSES, "non-COVID", {f"t{i}": f"test/img{i}.png" for i in range(100)})
    evaluate(trained, data, metrics, EvaluationSettings(threshold="youden", bootstrap=200), run_dir, 42)
    return folder


def sections_of(page: str) -> dict[str, str]:
    found = re.findall(r'<section id="([a-z_]+)">(.*?)</section>', page, flags=re.S)
    return dict(found)


def embedded_pngs(fragment: str) -> list[bytes]:
    return [
        base64.b64decode(data)
        for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', fragment)
    ]


def test_report_holds_every_section_with_its_images(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run-1", monkeypatch)
    report = build_report(run)
    assert report == run / "report.html"
    page = report.read_text(encoding="utf-8")
    found = sections_of(page)
    assert list(found) == SECTIONS
    assert 'class="missing"' not in page  # nothing is missing in a complete run
    expected_images = {"training": 2, "curves": 2, "confusion": 2, "calibration": 1}
    for section in SECTIONS:
        images = embedded_pngs(found[section])
        assert len(images) == expected_images.get(section, 0), section
        assert all(image.startswith(PNG_SIGNATURE) and len(image) > 5000 for image in images)
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == [
        "confusion_finetuned.png",
        "confusion_initial.png",
        "precision_recall.png",
        "reliability.png",
        "roc.png",
        "training_finetuned.png",
        "training_initial.png",
    ]
    assert (run / "plots" / "roc.png").read_bytes() in embedded_pngs(found["curves"])
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = metrics["models"]["finetuned"]["metrics"]["accuracy"]
    for text in (
        "Initial Model",
        "Fine-Tuned Model",
        "ROC AUC Score",
        "F1 Score",
        f"{accuracy['value']:.3f}",
        f"({accuracy['ci_low']:.3f}-{accuracy['ci_high']:.3f})",
        "youden, chosen on val",
    ):
        assert text in found["metrics"]
    difference = metrics["paired_differences"][0]
    assert (difference["model"], difference["reference"]) == ("finetuned", "initial")
    assert "Fine-Tuned Model - Initial Model" in found["metrics"]
    assert f"{difference['metrics']['roc_auc']['value']:+.3f}" in found["metrics"]
    assert "Covid (128).png" in found["split"] and "near_duplicates_test_vs_train" in found["split"]
    assert "<th>COVID</th>" in found["split"] and "Files per split and class" in found["split"]
    assert "root = &quot;data/sample&quot;" in found["recipe"]
    assert "3.11.9" in found["environment"]
    assert "line 99: epoch done" in found["log"] and "line 39:" not in found["log"]
    assert "completed" in found["overview"] and "non-COVID" in found["overview"]


def test_report_of_an_empty_folder_names_what_is_missing(tmp_path):
    (tmp_path / "recipe.toml").write_text('metrics = ["accuracy"]\n')  # a run that stopped at once
    report = build_report(tmp_path)
    found = sections_of(report.read_text(encoding="utf-8"))
    assert list(found) == SECTIONS
    for section, file in [
        ("metrics", "metrics.json"),
        ("training", "history_"),
        ("curves", "predictions_"),
        ("confusion", "predictions_"),
        ("calibration", "predictions_"),
        ("split", "split_summary.json"),
        ("environment", "environment.json"),
        ("log", "run.log"),
    ]:
        assert 'class="missing"' in found[section] and file in found[section], section
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())


def test_report_survives_partial_and_broken_files(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", monkeypatch)
    (run / "metrics.json").unlink()
    (run / "split_summary.json").write_text("{not json")
    (run / "history_finetuned.csv").write_text("")
    found = sections_of(build_report(run).read_text(encoding="utf-8"))
    assert "metrics.json is missing" in found["metrics"]
    assert "split_summary.json" in found["overview"] and "unreadable" in found["overview"]
    # with neither metrics.json nor split summary the positive class is unknown; confusion still draws
    assert "positive class is unknown" in found["curves"]
    assert len(embedded_pngs(found["confusion"])) == 2
    assert len(embedded_pngs(found["training"])) == 1 and "history_finetuned.csv" in found["training"]


def test_report_of_a_folder_that_does_not_exist_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="not a run directory"):
        build_report(tmp_path / "nope")


def test_report_of_a_three_class_run(tmp_path, monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    registry = build_registry()
    component = registry.get(Kind.METRIC, "roc_auc")
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet(np.ones(3), 60) + np.eye(3)[labels]
    probabilities /= probabilities.sum(1, keepdims=True)
    test = Predictions(tuple(f"s{i}" for i in range(60)), labels, probabilities)
    evaluate(
        [ModelPredictions("only", "Model", test, test)],
        EvaluationData(("a", "b", "c"), "c"),
        [("roc_auc", component.factory(component.options(), None))],
        EvaluationSettings(bootstrap=50),
        RunDirectory(tmp_path),
        0,
    )
    found = sections_of(build_report(tmp_path).read_text(encoding="utf-8"))
    assert "probability of the predicted class" in found["calibration"]
    assert len(embedded_pngs(found["curves"])) == 2 and len(embedded_pngs(found["confusion"])) == 1
    assert "ROC AUC Score (macro)" in found["metrics"]


def test_compare_runs_side_by_side(tmp_path, monkeypatch):
    from rich.console import Console

    from ctframe.compare import compare_runs

    first = make_run(tmp_path / "covid-a", monkeypatch, seed=0)
    second = make_run(tmp_path / "covid-b", monkeypatch, seed=1, accuracy_shift=0.1)
    empty = tmp_path / "empty"
    empty.mkdir()
    comparison = compare_runs([first, second, empty])
    data = comparison.as_dict()
    assert [run["run"] for run in data["runs"]] == ["covid-a", "covid-b", "empty"]
    assert data["runs"][0]["facts"]["dataset"] == "folder_split"
    assert data["runs"][0]["facts"]["threshold"] == "youden"
    assert data["runs"][2]["models"] == {} and "metrics.json" in data["runs"][2]["problem"]
    second_metrics = json.loads((second / "metrics.json").read_text())["models"]["finetuned"]["metrics"]
    assert data["runs"][1]["models"]["finetuned"]["accuracy"]["value"] == second_metrics["accuracy"]["value"]
    console = Console(record=True, width=250)
    console.print(comparison)
    text = console.export_text()
    for expected in (
        "covid-a",
        "covid-b",
        "Fine-Tuned Model",
        "Accuracy",
        "ROC AUC Score",
        "folder_split",
        f"{second_metrics['accuracy']['value']:.3f}",
        "no metrics.json",
    ):
        assert expected in text
    with pytest.raises(RunError, match="not a run directory"):
        compare_runs([tmp_path / "missing"])


def test_a_run_through_the_command_line_ends_with_metrics_predictions_and_report(
    toy_site, toy_recipe, monkeypatch, capsys
):
    """The engine calls evaluate and build_report; `ctframe report` and `ctframe compare` read the result."""
    from ctframe.cli import main

    monkeypatch.setenv(PLUGINS_ENV, "toy,classification_metrics")
    text = toy_recipe.read_text().replace(
        'metrics = ["toy_accuracy"]', 'metrics = ["accuracy", "precision", "recall", "f1", "roc_auc"]'
    )
    toy_recipe.write_text(text + '\n[evaluation]\nthreshold = "youden"\nbootstrap = 300\n')
    output = toy_recipe.parent / "runs"
    assert main(["run", str(toy_recipe), "--set", f"run.output={output}", "--set", "trainer.epochs=3"]) == 0
    printed = "".join(capsys.readouterr())  # the console may write to stdout or stderr
    assert "ROC AUC Score" in printed and "Youden's J on validation" in printed
    (run,) = output.iterdir()
    for name in ("metrics.json", "report.html", "split_summary.json", "recipe.toml", "environment.json"):
        assert (run / name).is_file(), name
    keys = list(json.loads((run / "metrics.json").read_text())["models"])
    assert keys and all((run / f"predictions_{key}.csv").is_file() for key in keys)
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert list(sections_of((run / "report.html").read_text(encoding="utf-8"))) == SECTIONS
    assert main(["compare", str(run), str(run)]) == 0
    assert "ROC AUC Score" in "".join(capsys.readouterr())
