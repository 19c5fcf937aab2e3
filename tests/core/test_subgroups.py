"""Subgroup results (``--subgroups CSV``): each subgroup scored on its own rows exactly as the whole test set
is, too-small subgroups listed but not scored, the flag, CSV matching, and ``evaluate`` / ``metrics`` end
to end on the grouped toy run of test_group_predictions. Numbers are fp64 (metrics, bootstrap)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from ctframe import DataError, Predictions
from ctframe.base.contracts import MetricInput
from ctframe.commands.main import main
from ctframe.evaluation import EvaluationData, EvaluationSettings
from ctframe.evaluation.scores import score
from ctframe.evaluation.subgroup_sources import subgroups_from_csv
from ctframe.evaluation.subgroups import MIN_IMAGES, model_subgroups, subgroup_tables
from ctframe.report.artifacts import RunArtifacts
from ctframe.report.subgroups import subgroups_view
from tests.core.test_group_predictions import files, run, toy  # noqa: F401  (module fixtures)

CLASSES = ("neg", "pos")
FILES = {"a": "data/x/1.png", "b": "data/y/1.png", "c": "data/y/2.png"}


def accuracy(inputs: MetricInput) -> dict[str, float]:
    predicted = (inputs.probabilities[:, inputs.positive_index] >= inputs.threshold).astype(int)
    return {"accuracy": float(np.mean(predicted == inputs.labels))}


METRICS = [("accuracy", accuracy)]
SETTINGS = EvaluationSettings(bootstrap=200)


def _predictions(n: int = 60, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    positive = np.clip(0.5 + (labels - 0.5) * rng.uniform(-0.2, 0.9, n), 0.01, 0.99)
    return Predictions(tuple(f"s{i}" for i in range(n)), labels, np.stack([1 - positive, positive], axis=1))


def _write(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.mark.parametrize("grouped", [False, True])
def test_subgroup_metrics_equal_the_metrics_of_its_rows_alone(grouped):
    test = _predictions()
    groups = {sid: f"p{i // 3}" for i, sid in enumerate(test.sample_ids)} if grouped else {}
    data = EvaluationData(CLASSES, "pos", groups=groups)
    site = {sid: ("A" if i < 36 else "B") for i, sid in enumerate(test.sample_ids)}
    result = model_subgroups(test, 0.4, data, METRICS, SETTINGS, 5, {"site": site})
    for entry in result["site"]:
        rows = np.asarray([site[sid] == entry["value"] for sid in test.sample_ids])
        alone = MetricInput(test.labels[rows], test.probabilities[rows], CLASSES, 1, 0.4)
        ids = np.asarray([groups[s] for s in np.asarray(test.sample_ids)[rows]]) if grouped else None
        expected = score("alone", METRICS, alone, SETTINGS, 5, ids)
        assert entry["images"] == rows.sum()
        got, want = entry["metrics"]["accuracy"], expected.estimates["accuracy"].as_dict()
        assert (got["value"], got["ci_low"], got["ci_high"]) == (
            want["value"],
            want["ci_low"],
            want["ci_high"],
        )
        assert entry["calibration"] == {n: e.as_dict() for n, e in expected.calibration.items()}
        assert ("groups" in entry) == grouped


def test_small_or_one_class_subgroups_are_listed_as_too_small_not_scored():
    test = _predictions()
    ids = test.sample_ids
    column = {sid: "big" for sid in ids}
    column.update({sid: "tiny" for sid in ids[: MIN_IMAGES - 1]})
    column.update({sid: "only-neg" for sid in ids[20:44:2]})  # 12 images, all label 0
    result = model_subgroups(test, 0.5, EvaluationData(CLASSES, "pos"), METRICS, SETTINGS, 0, {"v": column})
    by_value = {entry["value"]: entry for entry in result["v"]}
    assert by_value["tiny"] == {
        "value": "tiny",
        "images": MIN_IMAGES - 1,
        "too_small": "fewer than 10 images",
    }
    assert (
        by_value["only-neg"]["too_small"] == "not every class present"
        and by_value["only-neg"]["images"] == 12
    )
    assert "metrics" in by_value["big"] and "too_small" not in by_value["big"]


def test_the_flag_marks_an_interval_that_excludes_the_overall_value(tmp_path):
    labels = np.arange(80) % 2
    good = np.where(labels == 1, 0.9, 0.1)
    bad = np.where(labels == 1, 0.1, 0.9)
    positive = np.concatenate([good[:40], bad[40:]])  # half right, half wrong: overall accuracy 0.5
    test = Predictions(tuple(f"s{i}" for i in range(80)), labels, np.stack([1 - positive, positive], 1))
    half = {sid: ("right" if i < 40 else "wrong") for i, sid in enumerate(test.sample_ids)}
    everyone = {sid: "all" for sid in test.sample_ids}
    data = EvaluationData(CLASSES, "pos")
    result = model_subgroups(test, 0.5, data, METRICS, SETTINGS, 0, {"half": half, "all": everyone})
    assert all("accuracy" in entry["flagged"] for entry in result["half"])
    assert "accuracy" not in result["all"][0]["flagged"]
    no_ci = model_subgroups(test, 0.5, data, METRICS, EvaluationSettings(bootstrap=0), 0, {"half": half})
    assert all(entry["flagged"] == [] for entry in no_ci["half"])  # no interval, no flag
    record = {"models": {"m": {"title": "M", "variables": result}}, "bootstrap": {"resamples": 200}}
    console = Console(record=True, width=200)
    for table in subgroup_tables(record):
        console.print(table)
    shown = console.export_text()
    assert "1.000 *" in shown and "0.000 *" in shown and "0.500 *" not in shown
    (tmp_path / "subgroups.json").write_text(json.dumps(record))
    view = subgroups_view(RunArtifacts(tmp_path))
    assert "2 subgroup result(s) flagged" in view and "1.000 (1.000-1.000) *" in view


def test_csv_rows_match_files_by_path_ending_and_groups_by_id(tmp_path):
    table = subgroups_from_csv(
        _write(tmp_path / "s.csv", [("file", "site", "sex"), ("x/1.png", "A", "F"), ("y/1.png", "B", ""),
                                    ("2.png", "B", "M"), ("other.png", "C", "F")]),
        FILES, {},
    )  # fmt: skip
    assert table == {"site": {"a": "A", "b": "B", "c": "B"}, "sex": {"a": "F", "b": "(blank)", "c": "M"}}
    groups = {"a": "p1", "b": "p1", "c": "p2"}
    by_patient = _write(
        tmp_path / "p.csv", [("patient_id", "age"), ("p1", "60+"), ("p2", "<60"), ("p9", "x")]
    )
    assert subgroups_from_csv(by_patient, FILES, groups) == {"age": {"a": "60+", "b": "60+", "c": "<60"}}


def test_a_sample_id_keyed_manifest_with_chosen_columns(tmp_path):
    """volumes_manifest.csv's shape: sample_id, split, patient, ... and the technical fields; rows of other
    splits are ignored, the patient column is a key-like column, the chosen columns are the variables."""
    manifest = _write(
        tmp_path / "volumes_manifest.csv",
        [("sample_id", "split", "patient", "Manufacturer", "SliceThickness"),
         ("a", "test", "p1", "GE", "1.0"), ("b", "test", "p1", "GE", "5.0"),
         ("c", "test", "p2", "Siemens", "1.0"), ("z", "train", "p3", "GE", "1")],
    )  # fmt: skip
    chosen = subgroups_from_csv(manifest, FILES, {}, ["Manufacturer", "SliceThickness"])
    assert chosen == {
        "Manufacturer": {"a": "GE", "b": "GE", "c": "Siemens"},
        "SliceThickness": {"a": "1.0", "b": "5.0", "c": "1.0"},
    }
    assert set(subgroups_from_csv(manifest, FILES, {})) == {"split", "Manufacturer", "SliceThickness"}
    with pytest.raises(DataError, match="no subgroup column 'Kernel'"):
        subgroups_from_csv(manifest, FILES, {}, ["Kernel"])
    with pytest.raises(DataError, match="no subgroup column 'patient'"):
        subgroups_from_csv(manifest, FILES, {}, ["patient"])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("file", "site"), ("x/1.png", "A")], "2 predicted file(s) have no row"),
        ([("file", "site"), ("1.png", "A")], "matches 2 predicted files"),
        ([("name", "site"), ("x", "A")], "no file, sample_id or group column"),
        ([("file",), ("x/1.png",)], "no subgroup columns"),
        ([("file", "site"), ("x/1.png", "A"), ("data/x/1.png", "B")], "a second, different site"),
        ([("patient_id", "site"), ("p1", "A")], "the predictions have no groups"),
    ],
)
def test_csv_errors_are_one_line(tmp_path, rows, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        subgroups_from_csv(_write(tmp_path / "s.csv", rows), FILES, {})
    assert "\n" not in str(error.value)


def _site_csv(folder: Path, images: Path) -> Path:
    """Images 0-15 site A, 16-31 site B; three bright and dark images of B also scanner "rare"."""
    rows = [("file", "site", "scanner")]
    for index, path in enumerate(sorted(images.rglob("*.npy"))):
        name = int(path.stem.split("-")[1])
        rows.append(
            (f"{path.parent.name}/{path.name}", "A" if name < 16 else "B", "rare" if index < 3 else "common")
        )
    return _write(folder / "sites.csv", rows)


def test_evaluate_with_subgroups_writes_json_console_table_and_report(run, files, tmp_path, capsys):  # noqa: F811
    images, patients = files
    sites = _site_csv(tmp_path, images)
    arguments = ["evaluate", str(run), "--data", str(images), "--groups", str(patients)]
    assert main([*arguments, "--subgroups", str(sites), "--name", "sub"]) == 0
    external = run / "external" / "sub"
    record = json.loads((external / "subgroups.json").read_text())
    model = record["models"]["toy"]
    assert record["grouped"] and record["source"].endswith("sites.csv")
    assert [e["value"] for e in model["variables"]["site"]] == ["A", "B"]
    assert sum(e["images"] for e in model["variables"]["site"]) == 32
    rare = {e["value"]: e for e in model["variables"]["scanner"]}["rare"]
    assert rare["images"] == 3 and rare["too_small"] == "fewer than 10 images"
    with open(external / "predictions_toy.csv", newline="") as handle:
        predicted = list(csv.DictReader(handle))
    site_a = [row for row in predicted if int(Path(row["file"]).stem.split("-")[1]) < 16]
    accuracy = np.mean([row["predicted_class"] == row["true_class"] for row in site_a])
    assert model["variables"]["site"][0]["metrics"]["toy_accuracy"]["value"] == pytest.approx(accuracy)
    err = " ".join(capsys.readouterr().err.split())
    assert "Subgroups by site" in err and "too small" in err
    view = subgroups_view(RunArtifacts(external))
    assert "By site" in view and "By scanner" in view and "too small: fewer than 10 images" in view
    assert subgroups_view(RunArtifacts(run)) == ""  # no subgroups.json: no section


def test_evaluate_refuses_a_subgroups_csv_missing_files_before_predicting(run, files, tmp_path, capsys):  # noqa: F811
    images, _ = files
    partial = _write(tmp_path / "partial.csv", [("file", "site"), ("img-0000.npy", "A")])
    assert (
        main(["evaluate", str(run), "--data", str(images), "--subgroups", str(partial), "--name", "p"]) == 2
    )
    err = capsys.readouterr().err
    assert "31 predicted file(s) have no row" in err and "Traceback" not in err
    assert not (run / "external" / "p").exists()


def test_metrics_takes_subgroups_keyed_by_group(run, tmp_path):  # noqa: F811
    with open(run / "predictions_toy.csv", newline="") as handle:
        groups = sorted({row["group"] for row in csv.DictReader(handle)})
    by_patient = _write(
        tmp_path / "g.csv", [("group", "sex"), *((g, "F" if i % 2 else "M") for i, g in enumerate(groups))]
    )
    out = tmp_path / "m"
    assert (
        main(
            [
                "metrics",
                str(run / "predictions_toy.csv"),
                "-o",
                str(out),
                "--bootstrap",
                "50",
                "--subgroups",
                str(by_patient),
            ]
        )
        == 0
    )
    record = json.loads((out / "subgroups.json").read_text())
    entries = record["models"]["toy"]["variables"]["sex"]
    assert [e["value"] for e in entries] == ["F", "M"] and all(e["groups"] == 4 for e in entries)
    assert sum(e["images"] for e in entries) == 32


def test_metrics_reads_chosen_columns_of_a_sample_id_keyed_file(run, tmp_path):  # noqa: F811
    with open(run / "predictions_toy.csv", newline="") as handle:
        ids = [row["sample_id"] for row in csv.DictReader(handle)]
    rows = [(sid, "test", "GE" if i < 20 else "Siemens", "1.0") for i, sid in enumerate(ids)]
    manifest = _write(tmp_path / "m.csv", [("sample_id", "split", "Manufacturer", "SliceThickness"), *rows])
    out = tmp_path / "m"
    arguments = ["metrics", str(run / "predictions_toy.csv"), "-o", str(out), "--bootstrap", "20"]
    chosen = ["--subgroup-column", "Manufacturer", "--subgroup-column", "SliceThickness"]
    assert main([*arguments, "--subgroups", str(manifest), *chosen]) == 0
    variables = json.loads((out / "subgroups.json").read_text())["models"]["toy"]["variables"]
    assert list(variables) == ["Manufacturer", "SliceThickness"]
    assert [(e["value"], e["images"]) for e in variables["Manufacturer"]] == [("GE", 20), ("Siemens", 12)]
