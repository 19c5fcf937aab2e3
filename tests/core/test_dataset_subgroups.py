"""Subgroup variables a dataset offers (``DataSplits.attributes``): a run scores its test split per value
into ``subgroups.json`` and its report, leaves out a variable with one value, stops with
``[evaluation] subgroups = false``, and ``evaluate`` on a dataset file does the same unless a
``--subgroups CSV`` replaces them. The toy dataset's ``sites`` option offers 'site' and a constant
'scanner'. Metrics are fp64 on fp32 model outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ctframe.commands.main import main
from ctframe.evaluation.subgroup_sources import NOT_RECORDED, subgroups_from_attributes
from tests.toy.recipe import toy_recipe_text

QUICK = {"dataset": {"sites": 2}, "trainer": {"epochs": 2}, "evaluation": {"bootstrap": 20}}


def _run(folder: Path, *layers: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.toml"
    recipe.write_text(toy_recipe_text(QUICK, *layers))
    assert main(["run", str(recipe), "--output", str(folder / "runs")]) == 0
    (path,) = (folder / "runs").iterdir()
    return path


def test_constant_variables_are_left_out_and_missing_values_named():
    attributes = {"site": {"a": "A", "b": "B"}, "scanner": {"a": "X", "b": "X", "c": "Y"}}
    table, constant = subgroups_from_attributes(attributes, ["a", "b", "c"])
    assert table == {
        "site": {"a": "A", "b": "B", "c": NOT_RECORDED},
        "scanner": {"a": "X", "b": "X", "c": "Y"},
    }
    assert constant == {}
    table, constant = subgroups_from_attributes(attributes, ["a", "b"])  # only the predicted samples count
    assert list(table) == ["site"]
    assert constant == {"scanner": "X"}


def test_a_run_scores_the_datasets_subgroups(toy_site, tmp_path):
    run = _run(tmp_path)
    record = json.loads((run / "subgroups.json").read_text())
    assert "dataset toy_data" in record["source"]
    models = record["models"]
    assert set(models) == set(json.loads((run / "metrics.json").read_text())["models"])
    for model in models.values():
        assert list(model["variables"]) == ["site"]  # 'scanner' has one value: left out
        entries = model["variables"]["site"]
        assert [e["value"] for e in entries] == ["site 0", "site 1"]
        assert sum(e["images"] for e in entries) == 32  # every test image in exactly one site
        for entry in entries:
            assert "too_small" not in entry
            assert set(entry["metrics"]) == {"toy_accuracy"}
            assert 0.0 <= entry["calibration"]["ece"]["value"] <= 1.0
    log = (run / "run.log").read_text()
    assert "scanner toy scanner; not broken down" in log
    report = (run / "report.html").read_text()
    assert "By site" in report


def test_subgroups_false_writes_no_subgroups(toy_site, tmp_path):
    run = _run(tmp_path, {"evaluation": {"subgroups": False}})
    assert not (run / "subgroups.json").exists()


@pytest.fixture
def dataset_file(tmp_path) -> Path:
    path = tmp_path / "external.toml"
    path.write_text('[dataset]\ncomponent = "toy_data"\nsamples = 24\nsites = 3\n')
    return path


def test_evaluate_on_a_dataset_file_uses_its_attributes(toy_site, tmp_path, dataset_file):
    run = _run(tmp_path / "a")
    assert main(["evaluate", str(run), "--data", str(dataset_file), "--name", "ext"]) == 0
    record = json.loads((run / "external" / "ext" / "subgroups.json").read_text())
    assert record["source"].startswith("the data's own attributes")
    values = [e["value"] for e in next(iter(record["models"].values()))["variables"]["site"]]
    assert values == ["site 0", "site 1", "site 2"]


def test_a_subgroups_csv_replaces_the_datasets_attributes(toy_site, tmp_path, dataset_file):
    run = _run(tmp_path / "a")
    table = tmp_path / "bands.csv"
    with open(table, "w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["sample_id", "band"])
        rows.writerows([f"test/{i:04d}", "low" if i < 12 else "high"] for i in range(24))
    argv = ["evaluate", str(run), "--data", str(dataset_file), "--name", "csv", "--subgroups", str(table)]
    assert main(argv) == 0
    record = json.loads((run / "external" / "csv" / "subgroups.json").read_text())
    assert list(next(iter(record["models"].values()))["variables"]) == ["band"]
    assert record["source"].endswith("bands.csv")
