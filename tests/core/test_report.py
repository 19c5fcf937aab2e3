"""The run report and run comparison, built from a run directory of real files."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ctframe import Kind, Predictions, RunError, hookimpl
from ctframe.evaluation import EvaluationData, EvaluationSettings, evaluate
from ctframe.evaluation.results import ModelPredictions
from ctframe.registry.plugins import PLUGINS_ENV, build_registry
from ctframe.report import build_report
from ctframe.storage.files import write_json, write_text
from ctframe.storage.rundir import RunDirectory
from tests.conftest import REPO

CLASSES = ("COVID", "non-COVID")
CORE_SECTIONS = [
    "findings",
    "overview",
    "metrics",
    "training",
    "curves",
    "confusion",
    "gallery",
    "calibration",
    "external",
    "split",
    "recipe",
    "environment",
    "card",
    "log",
]
"""Every run's report, whatever its dataset."""
FOLDER_SPLIT_SECTIONS = ["split_groups", "leakage"]
GROUPED_SECTIONS = ["groups"]
"""Runs whose samples carry groups (folder_split groups scan sequences) also get the per-group view."""
SECTIONS = [
    *CORE_SECTIONS[:7],
    *GROUPED_SECTIONS,
    *CORE_SECTIONS[7:10],
    *FOLDER_SPLIT_SECTIONS,
    *CORE_SECTIONS[10:],
]
"""A folder_split run's report."""
QUICKSTART_SECTIONS = SECTIONS
"""The quickstart's report (test_report_browser.py checks it in a browser)."""
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


# What the engine writes, with the keys of a dataset's summary the core reads (counts, lines) and one
# it does not (seed), at the scale of a small study.
SPLIT_SUMMARY = {
    "class_names": list(CLASSES),
    "positive_class": "non-COVID",
    "sizes": {"train": 40, "val": 20, "test": 100},
    "counts": {
        "train": {"COVID": 20, "non-COVID": 20},
        "val": {"COVID": 10, "non-COVID": 10},
        "test": {"COVID": 50, "non-COVID": 50},
    },
    "lines": ["160 images read from 2 class folders"],
    "seed": 42,
}


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
    """A run directory holding every file of the core: what the engine, trainer and evaluation write.

    (The recipe names folder_split, whose own files tests/plugins/folder_split adds.)"""
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
    write_json(folder / "split_summary.json", SPLIT_SUMMARY)
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
    assert list(found) == CORE_SECTIONS  # folder_split is not loaded: the core's sections alone
    assert 'class="missing"' not in page  # nothing is missing in a complete run
    expected_images = {"training": 2, "curves": 2, "confusion": 2, "calibration": 1}
    for section in CORE_SECTIONS:
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
    assert "<th>Class</th><th>Training</th><th>Validation</th><th>Test</th><th>Total</th>" in found["split"]
    assert "root = &quot;data/sample&quot;" in found["recipe"]
    assert "3.11.9" in found["environment"]
    assert "line 99: epoch done" in found["log"] and "line 39:" not in found["log"]
    assert "completed" in found["overview"] and "non-COVID" in found["overview"]


def test_report_of_an_empty_folder_names_what_is_missing(tmp_path):
    (tmp_path / "recipe.toml").write_text('metrics = ["accuracy"]\n')  # a run that stopped at once
    report = build_report(tmp_path)
    found = sections_of(report.read_text(encoding="utf-8"))
    assert list(found) == CORE_SECTIONS
    for section, file in [
        ("metrics", "metrics.json"),
        ("training", "history_"),
        ("curves", "predictions_"),
        ("confusion", "predictions_"),
        ("gallery", "predictions_"),
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

    from ctframe.workflows.compare import compare_runs

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
    from ctframe.commands.main import main

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
    assert list(sections_of((run / "report.html").read_text(encoding="utf-8"))) == CORE_SECTIONS
    assert main(["compare", str(run), str(run)]) == 0
    assert "ROC AUC Score" in "".join(capsys.readouterr())


def _visible(fragment: str) -> str:
    """What a reader sees without opening the collapsed raw records."""
    return re.sub(r"<details>.*?</details>", "", fragment, flags=re.S)


def test_the_data_split_is_written_for_a_person(tmp_path, monkeypatch):
    """From split_summary.json: the sizes in one sentence, images per class, the dataset's own lines."""
    run = make_run(tmp_path / "run", monkeypatch)
    found = sections_of(build_report(run).read_text(encoding="utf-8"))
    split = _visible(found["split"])
    assert (
        '<p class="verdict">160 images of 2 classes are split 40 / 20 / 100 (training / validation / test; '
        "25% / 12% / 62%).</p>" in split
    )
    assert '<tr><td>COVID</td><td class="number">20</td>' in split
    assert '<td>all classes</td><td class="number">40</td>' in split
    assert '<p class="muted">160 images read from 2 class folders</p>' in split
    assert "seed" not in split and "seed" in found["split"]  # the rest of the record, collapsed

    summary = dict(SPLIT_SUMMARY, counts="not a table")  # a dataset's own shape of `counts`
    del summary["sizes"]
    write_json(run / "split_summary.json", summary)
    split = sections_of(build_report(run).read_text(encoding="utf-8"))["split"]
    assert "2 classes; the size of each split was not recorded." in split and "Images per class" not in split
    assert "not a table" in split  # shown as recorded, collapsed


def test_a_third_party_dataset_gets_a_complete_report(toy_site, toy_recipe, monkeypatch):
    """The toy dataset writes no split_manifest.csv or leakage.json: every core section, nothing of
    folder_split's although it is loaded, and no section that failed."""
    from ctframe.commands.main import main

    monkeypatch.setenv(PLUGINS_ENV, "toy,folder_split")
    output = toy_recipe.parent / "runs"
    assert main(["run", str(toy_recipe), "--set", f"run.output={output}", "--set", "trainer.epochs=3"]) == 0
    (run,) = output.iterdir()
    assert not (run / "split_manifest.csv").exists() and not (run / "leakage.json").exists()
    page = (run / "report.html").read_text(encoding="utf-8")  # the one the engine wrote
    found = sections_of(page)
    assert list(found) == CORE_SECTIONS
    assert "could not be built" not in page and "plugin_sections" not in page
    # environment.json records the command line, which may name anything (pytest's arguments here)
    said = "".join(text for key, text in found.items() if key != "environment").lower()
    assert "leakage" not in said and "manifest" not in said
    assert (
        '<p class="verdict">96 images of 2 classes are split 32 / 32 / 32 (training / validation / test; '
        "33% / 33% / 33%).</p>" in found["split"]
    )
    assert "generator" in found["split"]  # the toy dataset's own summary key, collapsed
    for section in (
        "metrics",
        "training",
        "curves",
        "confusion",
        "calibration",
        "recipe",
        "environment",
        "log",
    ):
        assert 'class="missing"' not in found[section], section


REPORT_PLUGIN = """
from ctframe import hookimpl
from ctframe.api.report import html


def diagnostics(report):
    return html.paragraph(f"third-party trainer diagnostics for {len(report.run.histories)} models")


@hookimpl
def ctframe_report_sections(register):
    register("trainer_diagnostics", "Trainer diagnostics", diagnostics, order=350)
"""


def test_a_third_party_plugin_adds_a_report_section(tmp_path, monkeypatch, capsys):
    """Installed through an entry point like any plugin; `ctframe report` places it by its order."""
    from ctframe.commands.main import main
    from tests.conftest import install_distribution

    run = make_run(tmp_path / "run", monkeypatch)
    source = tmp_path / "src" / "reportx_ctframe.py"
    source.parent.mkdir()
    source.write_text(REPORT_PLUGIN)
    site = install_distribution(tmp_path / "site", source, "reportx_ctframe", "reportx")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(PLUGINS_ENV, "reportx,classification_metrics")
    try:
        assert main(["report", str(run)]) == 0
    finally:
        sys.modules.pop("reportx_ctframe", None)
    found = sections_of((run / "report.html").read_text(encoding="utf-8"))
    assert list(found) == [*CORE_SECTIONS[:4], "trainer_diagnostics", *CORE_SECTIONS[4:]]
    assert "third-party trainer diagnostics for 2 models" in found["trainer_diagnostics"]
    assert '<a href="#trainer_diagnostics">Trainer diagnostics</a>' in (run / "report.html").read_text()


class _Sections:
    """A plugin object with a broken section, a taken key and a good one."""

    @hookimpl
    def ctframe_report_sections(self, register):
        register("early", "First of all", lambda report: "<p>early bird</p>", order=1)
        register("broken", "Broken section", lambda report: 1 / 0, order=450)
        register("metrics", "Stolen metrics", lambda report: "<p>not mine</p>")


class _BrokenHook:
    @hookimpl
    def ctframe_report_sections(self, register):
        register("half", "Half registered", lambda report: "<p>half</p>")
        raise RuntimeError("the hook itself failed")


def test_plugin_sections_that_fail_cost_only_themselves(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", monkeypatch)
    registry = build_registry(extra=[_Sections(), _BrokenHook()], selection="classification_metrics")
    page = build_report(run, registry=registry).read_text(encoding="utf-8")
    found = sections_of(page)
    assert list(found) == ["early", *CORE_SECTIONS[:5], "broken", *CORE_SECTIONS[5:], "plugin_sections"]
    assert found["broken"].strip() == (
        '<h2>Broken section</h2>\n<p class="missing">Broken section could not be built: ZeroDivisionError: '
        "division by zero</p>"
    )
    assert "not mine" not in page and "half" not in found
    assert (
        "section &#x27;metrics&#x27; is already added by &#x27;ctframe.report.core_sections&#x27;"
        in found["plugin_sections"]
    )
    assert "RuntimeError: the hook itself failed" in found["plugin_sections"]
    assert len(embedded_pngs(found["curves"])) == 2  # the core's sections are untouched


def test_report_section_registration_is_checked():
    from ctframe.report.context import collect_sections

    class Bad:
        @hookimpl
        def ctframe_report_sections(self, register):
            register("Bad Key", "title", lambda report: "")

    registry = build_registry(extra=[Bad()], selection="")
    collected = collect_sections(registry.manager)
    assert [s.key for s in collected.sections][:3] == ["findings", "overview", "metrics"]
    assert collected.problems == [
        ("Bad", "ValueError: section key 'Bad Key': use lower-case letters, digits and _")
    ]


# ------------------------------------------------------------------------------ a real tiny run

TINY_PLUGINS = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"
TINY = [
    "dataset.image_size=32",
    "dataset.cache=none",
    "head.units=16",
    "trainer.initial.epochs=1",
    "trainer.finetuned.epochs=1",
    "trainer.progress=false",
    "evaluation.bootstrap=20",
]


def tiny_run(folder: Path) -> Path:
    """The quickstart recipe at 32 px with random weights: a real run directory in a few seconds."""
    import torch

    from ctframe.commands.main import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PLUGINS_ENV, TINY_PLUGINS)
        torch.set_num_threads(1)
        arguments = ["run", str(REPO / "recipes" / "quickstart.toml"), "--output", str(folder / "runs")]
        for value in [f"dataset.root={folder / 'demo'}", *TINY]:
            arguments += ["--set", value]
        assert main(arguments) == 0
    (run,) = (folder / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("report-run"))


def _gallery_cells(fragment: str, key: str) -> dict[str, tuple[int, list[str]]]:
    """Cell code -> (count in the heading, the tiles shown)."""
    cells = {}
    for code in ("TP", "FP", "FN", "TN"):
        match = re.search(
            rf'<h4 id="gallery-{key}-{code}">[^<]*: (\d+) images?</h4>(.*?)(?=<h4|<h3|$)', fragment, re.S
        )
        assert match, (key, code)
        cells[code] = (int(match[1]), re.findall(r'<figure class="tile".*?</figure>', match[2], re.S))
    return cells


def _cell_counts(rows: list[dict[str, str]], positive: str) -> dict[str, int]:
    counts = Counter()
    for row in rows:
        truth, said = row["true_class"] == positive, row["predicted_class"] == positive
        counts[
            {(True, True): "TP", (False, True): "FP", (True, False): "FN", (False, False): "TN"}[truth, said]
        ] += 1
    return counts


def test_a_finished_run_reports_completed_precision_and_threads(finished_run):
    page = (finished_run / "report.html").read_text(encoding="utf-8")  # the one the engine wrote
    found = sections_of(page)
    assert list(found) == QUICKSTART_SECTIONS
    assert "could not be built" not in page and "plugin_sections" not in found
    assert "ctframe run report (completed)" in page
    assert "<td>status</td><td>completed</td>" in found["overview"]
    environment = json.loads((finished_run / "environment.json").read_text())
    training = environment["precision"]["training"]
    assert (
        f"<td>training precision</td><td>{training['resolved']} (requested {training['requested']};"
        in found["overview"]
    )
    assert "<td>evaluation precision</td><td>fp32 (requested fp32" in found["overview"]
    assert (
        f'<td>torch threads</td><td class="number">{environment["torch_threads"]}</td>' in found["overview"]
    )


def test_the_gallery_shows_each_cell_most_confident_first(finished_run, tmp_path, monkeypatch):
    """745 test rows per model (the study's test split), every cell well filled: 8 thumbnails each."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    positive, negative = "non-COVID", "COVID"
    files = [row["file"] for row in csv.DictReader((run / "predictions_finetuned.csv").open())]
    rng = np.random.default_rng(3)
    for key in ("initial", "finetuned"):
        with (run / f"predictions_{key}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "file",
                    "sample_id",
                    "true_class",
                    "predicted_class",
                    "positive_class",
                    "threshold",
                    f"p_{negative}",
                    f"p_{positive}",
                ]
            )
            for i in range(745):
                truth = positive if i % 2 else negative
                score = float(rng.uniform(0.01, 0.99))
                said = positive if score >= 0.5 else negative
                writer.writerow(
                    [files[i % len(files)], f"s{i}", truth, said, positive, 0.5, 1 - score, score]
                )
    monkeypatch.setenv(PLUGINS_ENV, TINY_PLUGINS)
    report = build_report(run)
    page = report.read_text(encoding="utf-8")
    gallery = sections_of(page)["gallery"]
    for key in ("initial", "finetuned"):
        rows = list(csv.DictReader((run / f"predictions_{key}.csv").open()))
        expected = _cell_counts(rows, positive)
        cells = _gallery_cells(
            gallery.split(f"<h3>{'Initial' if key == 'initial' else 'Fine-Tuned'} Model</h3>")[1], key
        )
        for code, (count, tiles) in cells.items():
            assert count == expected[code] and len(tiles) == min(8, expected[code]) == 8, (key, code)
            scores = [float(s) for tile in tiles for s in re.findall(r"p\(non-COVID\) ([0-9.]+)<br>", tile)]
            assert len(scores) == 8
            predicted_positive = code in ("TP", "FP")
            assert scores == sorted(scores, reverse=predicted_positive)  # the most confident first
            if code == "FP":  # the worst false positives are the highest scored negatives
                worst = sorted(
                    (
                        float(r[f"p_{positive}"])
                        for r in rows
                        if r["true_class"] == negative and r["predicted_class"] == positive
                    ),
                    reverse=True,
                )[:8]
                assert scores == pytest.approx(worst, abs=1e-3)
    thumbnails = re.findall(
        r'<img class="thumb" alt="[^"]*" src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', gallery
    )
    assert len(thumbnails) == 2 * 4 * 8
    from PIL import Image

    sizes = {Image.open(io.BytesIO(base64.b64decode(t))).size for t in thumbnails}
    assert sizes == {(96, 96)}
    assert 'class="missing"' not in gallery
    # one self-contained file, small: 64 thumbnails of about 1-3 KB and the plots
    assert report.stat().st_size < 1_500_000, report.stat().st_size


def test_the_gallery_draws_grad_cam_overlays_when_an_explainer_is_installed(finished_run, monkeypatch):
    pytest.importorskip("pytorch_grad_cam", reason="the explain extra (grad-cam) is not installed")
    from importlib import metadata

    if "gradcam" not in {ep.name for ep in metadata.entry_points(group="ctframe")}:
        pytest.skip("the gradcam plugin is not installed")
    monkeypatch.setenv(PLUGINS_ENV, TINY_PLUGINS + ",gradcam")
    gallery = sections_of(build_report(finished_run).read_text(encoding="utf-8"))["gallery"]
    tiles = re.findall(r'<figure class="tile".*?</figure>', gallery, re.S)
    assert tiles and all(tile.count("<img ") == 2 and "Grad-CAM of " in tile for tile in tiles)
    assert "Beside each image: its Grad-CAM overlay" in gallery and 'class="missing"' not in gallery


def test_without_model_files_the_gallery_counts_and_names(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", monkeypatch)
    gallery = sections_of(build_report(run).read_text(encoding="utf-8"))["gallery"]
    assert "No thumbnails" in gallery and "<img" not in gallery
    rows = list(csv.DictReader((run / "predictions_initial.csv").open()))
    cells = _gallery_cells(gallery.split("<h3>Initial Model</h3>")[1], "initial")
    assert {code: count for code, (count, _) in cells.items()} == dict(_cell_counts(rows, "non-COVID"))
