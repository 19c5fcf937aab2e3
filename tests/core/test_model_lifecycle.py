"""A trained model leaves its run: model files, predict, evaluate on external data, metrics on a CSV.

One tiny real run (folder_split demo data at 32 px, ResNet50V2 with random weights, 2 + 1 epochs) is
shared by the tests of this module. Every probability compared here is fp32: the run's
``[evaluation] precision`` default, and ``predict``'s.
"""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ctframe.commands.main import main
from ctframe.runtime.loading import load_model
from ctframe.storage.modelfile import models_of_run
from tests.conftest import REPO
from tests.tolerances import FP32_PROBABILITY_ATOL

PLUGINS = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"
TINY = [
    "dataset.image_size=32",
    "dataset.cache=none",
    "head.units=16",
    "trainer.initial.epochs=2",
    "trainer.finetuned.epochs=1",
    "trainer.progress=false",
    "evaluation.bootstrap=50",
]


def _overrides(values: list[str]) -> list[str]:
    return [argument for value in values for argument in ("--set", value)]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lifecycle")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTFRAME_PLUGINS", PLUGINS)
        torch.set_num_threads(1)
        arguments = ["run", str(REPO / "recipes" / "quickstart.toml"), "--output", str(folder / "runs")]
        arguments += _overrides([f"dataset.root={folder / 'demo'}", *TINY])
        assert main(arguments) == 0
    (run,) = (folder / "runs").iterdir()
    return run


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)


def test_a_run_writes_a_self_describing_model_file_per_model(finished_run):
    models = models_of_run(finished_run)
    assert [m.stem for m in models] == ["initial", "finetuned"]
    metadata = json.loads(models[-1].read_text())
    assert metadata["format"] == "ctframe-model"
    assert metadata["backbone"]["component"] == "resnet50v2" and metadata["head"]["component"] == "dense"
    assert metadata["class_names"] == ["COVID", "non-COVID"] and metadata["positive_class"] == "non-COVID"
    assert metadata["threshold"] == 0.5 and metadata["threshold_choice"]["method"] == "fixed"
    assert metadata["input"]["dataset"]["component"] == "folder_split"
    assert metadata["input"]["shape"] == [3, 32, 32]
    assert metadata["versions"]["ctframe"] and metadata["versions"]["torch"]
    assert metadata["run"]["path"] == str(finished_run) and len(metadata["weights"]["sha256"]) == 64


def test_load_model_round_trip_reproduces_the_runs_test_probabilities(finished_run, tmp_path):
    rows = _rows(finished_run / "predictions_finetuned.csv")
    loaded = load_model(finished_run / "models" / "finetuned.json")
    assert loaded.info.title == "Fine-Tuned Model" and not loaded.classifier.training
    files = [Path(row["file"]) for row in rows]
    out = tmp_path / "again.csv"
    assert main(["predict", str(finished_run), *map(str, files), "--output", str(out)]) == 0
    again = {row["file"]: row for row in _rows(out)}
    for row in rows:  # the same fp32 numbers as the run's own evaluation, to the last printed digit
        assert again[row["file"]]["p_non-COVID"] == row["p_non-COVID"]
        assert again[row["file"]]["predicted_class"] == row["predicted_class"]


def test_predict_on_folders_names_classes_and_skips_bad_files_when_asked(finished_run, tmp_path, capsys):
    images = tmp_path / "new"
    shutil.copytree(finished_run.parent.parent / "demo" / "COVID", images)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "preds.csv"
    assert main(["predict", str(finished_run), str(images), "-o", str(out), "--model", "initial"]) == 2
    assert "broken.png" in capsys.readouterr().err and not out.exists()
    assert main(["predict", str(finished_run), str(images), "-o", str(out), "--on-bad-image", "skip"]) == 0
    rows = _rows(out)
    assert list(rows[0]) == [
        "file", "sample_id", "predicted_class", "positive_class", "threshold", "p_COVID", "p_non-COVID"
    ]
    assert len(rows) == len(list(images.glob("Covid*"))) and "skipped" in capsys.readouterr().err
    assert main(["predict", str(finished_run), str(images), "--model", "nope", "-o", str(out)]) == 2
    assert "no model 'nope'; this run has: initial, finetuned" in capsys.readouterr().err


def test_tampered_or_pickled_weights_are_refused(finished_run, tmp_path, capsys):
    copy = tmp_path / "models"
    shutil.copytree(finished_run / "models", copy)
    weights = copy / "finetuned.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["predict", str(copy / "finetuned.json"), str(tmp_path), "-o", str(tmp_path / "p.csv")]) == 2
    assert "sha256 differs" in capsys.readouterr().err

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    weights.write_bytes(pickle.dumps({"backbone.x": Payload()}))
    from ctframe.storage.modelfile import reseal_model_file

    reseal_model_file(copy / "finetuned.json")  # a consistent forgery: sha256 and unkeyed digest match
    assert main(["predict", str(copy / "finetuned.json"), str(tmp_path), "-o", str(tmp_path / "p.csv")]) == 2
    message = capsys.readouterr().err
    assert "not a safetensors file" in message and "weights_only" not in message
    assert not (tmp_path / "pwned").exists()


def test_a_model_whose_plugin_is_missing_gets_one_line(finished_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split,dense_head,classification_metrics")
    assert main(["predict", str(finished_run), str(tmp_path), "-o", str(tmp_path / "p.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert "backbone 'resnet50v2' from plugin 'resnet_v2', which is not installed" in error
    assert len(error.splitlines()) == 1 and "Traceback" not in error


def test_evaluate_on_an_external_folder_with_and_without_a_class_map(finished_run, tmp_path, capsys):
    demo = finished_run.parent.parent / "demo"
    external = tmp_path / "ucsd-like"
    shutil.copytree(demo / "COVID", external / "CT_COVID")
    shutil.copytree(demo / "non-COVID", external / "CT_NonCOVID")
    assert main(["evaluate", str(finished_run), "--data", str(external)]) == 2
    assert "--class-map" in capsys.readouterr().err
    mapping = "CT_COVID=COVID,CT_NonCOVID=non-COVID"
    assert main(["evaluate", str(finished_run), "--data", str(external), "--class-map", mapping]) == 0
    result = finished_run / "external" / "ucsd-like"
    metrics = json.loads((result / "metrics.json").read_text())
    assert list(metrics["models"]) == ["initial", "finetuned"]
    for model in metrics["models"].values():
        assert model["test_samples"] == 480 and model["threshold"]["value"] == 0.5  # stored, not re-chosen
    source = json.loads((result / "source.json").read_text())
    assert source["class_map"] == {"CT_COVID": "COVID", "CT_NonCOVID": "non-COVID"}
    assert source["class_counts"] == {"COVID": 240, "non-COVID": 240}
    assert (result / "report.html").is_file()
    assert "ucsd-like" in (finished_run / "report.html").read_text()  # the run's report lists it

    # without a map the folder names must be the model's
    same = tmp_path / "same-names"
    shutil.copytree(demo, same)
    assert main(["evaluate", str(finished_run), "--data", str(same), "--name", "again"]) == 0
    rows = _rows(finished_run / "external" / "again" / "predictions_finetuned.csv")
    assert {row["true_class"] for row in rows} == {"COVID", "non-COVID"}

    shutil.rmtree(external / "CT_NonCOVID")
    shutil.copytree(demo / "non-COVID", external / "Other")
    again = ["evaluate", str(finished_run), "--data", str(external), "--class-map", mapping]
    assert main(again) == 2 and "--force" in capsys.readouterr().err  # ucsd-like/ holds the results above
    assert main([*again, "--force"]) == 2
    assert "CT_NonCOVID" in capsys.readouterr().err
    assert (result / "metrics.json").is_file()  # a failed --force keeps the earlier results


def test_metrics_on_a_csv_from_a_known_confusion_matrix(tmp_path):
    # 30 TP, 10 FN, 5 FP, 55 TN at threshold 0.5, positive class "sick"
    rows = [("sick", 0.9)] * 30 + [("sick", 0.2)] * 10 + [("well", 0.7)] * 5 + [("well", 0.1)] * 55
    path = tmp_path / "other_tool.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "true_class", "p_well", "p_sick"])
        for index, (truth, sick) in enumerate(rows):
            writer.writerow([f"img{index}.png", truth, 1 - sick, sick])
    arguments = ["metrics", str(path), "--positive", "sick", "--bootstrap", "100", "-o", str(tmp_path / "m")]
    assert main(arguments) == 0
    scored = json.loads((tmp_path / "m" / "metrics.json").read_text())["models"]["other_tool"]["metrics"]
    precision, recall = 30 / 35, 30 / 40
    assert scored["precision"]["value"] == pytest.approx(precision)
    assert scored["recall"]["value"] == pytest.approx(recall)
    assert scored["f1"]["value"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert scored["precision"]["ci_low"] < precision < scored["precision"]["ci_high"]
    assert (tmp_path / "m" / "report.html").is_file()


def test_metrics_reads_ctframes_own_predictions(finished_run, tmp_path):
    source = finished_run / "predictions_finetuned.csv"
    assert main(["metrics", str(source), "-o", str(tmp_path / "m"), "--bootstrap", "0"]) == 0
    again = json.loads((tmp_path / "m" / "metrics.json").read_text())["models"]["finetuned"]["metrics"]
    original = json.loads((finished_run / "metrics.json").read_text())["models"]["finetuned"]["metrics"]
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert again[name]["value"] == pytest.approx(original[name]["value"], abs=1e-6)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,p_a,p_b\nx,0.5,0.5\n", "needs a 'true_class' column"),
        ("true_class,p_a,p_b\na,0.5,0.5\n", "name the positive class with --positive"),
        ("true_class,p_a,p_b,positive_class\nc,0.5,0.5,a\n", "true_class 'c' is not one of"),
        ("true_class,p_a,p_b,positive_class\na,0.9,0.5,a\n", "probabilities that sum to 1"),
        ("true_class,p_a,p_b,positive_class\na,x,0.5,a\n", "is not a number"),
    ],
)
def test_bad_predictions_files_get_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["metrics", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_zero_epochs_evaluates_the_model_as_built_and_says_so(finished_run, tmp_path):
    """With every phase at 0 epochs the engine evaluates what [run] weights gave it (here: the run's
    fine-tuned model), which is how an imported Keras classifier is evaluated."""
    arguments = ["run", str(REPO / "recipes" / "quickstart.toml"), "--output", str(tmp_path)]
    demo = finished_run.parent.parent / "demo"
    arguments += _overrides(
        [
            f"dataset.root={demo}",
            *TINY,
            "trainer.initial.epochs=0",
            "trainer.finetuned.epochs=0",
            f"run.weights={finished_run / 'models' / 'finetuned.json'}",
        ]
    )
    assert main(arguments) == 0
    (run,) = tmp_path.iterdir()
    assert "evaluating the model as built" in (run / "run.log").read_text()
    assert [m.stem for m in models_of_run(run)] == ["as_built"]
    rebuilt = _rows(run / "predictions_as_built.csv")
    original = {row["file"]: row for row in _rows(finished_run / "predictions_finetuned.csv")}
    assert all(original[row["file"]]["p_COVID"] == row["p_COVID"] for row in rebuilt)
    np.testing.assert_equal(len(rebuilt), len(original))


def test_evaluate_on_a_dataset_file_puts_everything_in_test(finished_run, tmp_path):
    demo = finished_run.parent.parent / "demo"
    external = tmp_path / "external.toml"
    external.write_text(
        "[dataset]\ncomponent = \"folder_split\"\n"
        f'root = "{demo}"\nclasses = ["COVID", "non-COVID"]\npositive_class = "non-COVID"\n'
        "image_size = 32\ncache = \"none\"\ntest_only = true\n"
    )
    assert main(["evaluate", str(finished_run), "--data", str(external), "--name", "from-file"]) == 0
    result = finished_run / "external" / "from-file"
    source = json.loads((result / "source.json").read_text())
    assert source["class_counts"] == {"COVID": 240, "non-COVID": 240}
    rebuilt = {row["file"]: row for row in _rows(result / "predictions_finetuned.csv")}
    for row in _rows(finished_run / "predictions_finetuned.csv"):  # same files read the same way; other
        # batches (all 480 images, not the test ones) let oneDNN sum in another order: fp32 rounding only
        got, expected = float(rebuilt[row["file"]]["p_non-COVID"]), float(row["p_non-COVID"])
        assert got == pytest.approx(expected, abs=FP32_PROBABILITY_ATOL)
