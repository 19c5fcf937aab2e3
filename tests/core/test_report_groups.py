"""The report at the group level: the 'Per <unit>' metrics table and the 'Groups by outcome' strips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctframe import DataSplits
from ctframe.commands.main import main
from ctframe.evaluation.aggregate import Aggregation, aggregate
from ctframe.report.gallery import CELLS
from ctframe.report.groups import build_groups, pick, scan_order


def _rows(cases: dict[str, tuple[str, list[float]]]) -> list[dict[str, str]]:
    rows = []
    for group, (truth, scores) in cases.items():
        for index, score in reversed(list(enumerate(scores))):  # written out of order on purpose
            rows.append(
                {
                    "sample_id": f"{group} ({index + 1}).png",
                    "group": group,
                    "true_class": truth,
                    "p_pos": str(score),
                    "p_neg": str(1 - score),
                }
            )
    return rows


def test_scan_order_compares_numbers_as_numbers():
    names = ["case (10).png", "case (9).png", "se-a/0010", "se-a/0002"]
    assert sorted(names, key=scan_order) == ["case (9).png", "case (10).png", "se-a/0002", "se-a/0010"]


@pytest.mark.parametrize("method", ["mean", "max", "topk_mean", "noisy_or"])
def test_groups_are_aggregated_and_decided_as_evaluation_does(method):
    cases = {
        "a": ("pos", [0.1, 0.9, 0.2]),
        "b": ("pos", [0.1] * 10),
        "c": ("neg", [0.05, 0.3]),
        "d": ("neg", [0.7, 0.8, 0.9, 0.95]),
    }
    record = {"aggregate": {"method": method, "k": 2}, "threshold": {"value": 0.5}}
    groups = build_groups(_rows(cases), "pos", record)
    assert [g.name for g in groups] == ["a", "b", "c", "d"]
    expected = aggregate(
        np.concatenate([np.array(s) for _, s in cases.values()]),
        np.repeat(list(cases), [len(s) for _, s in cases.values()]),
        Aggregation(method, 2),
    )[1]
    np.testing.assert_allclose([g.probability for g in groups], expected)  # fp64
    assert [g.predicted_positive for g in groups] == list(expected >= 0.5)
    assert groups[0].scores.tolist() == [0.1, 0.9, 0.2]  # back in scan order
    assert groups[0].top(2) == [1, 2]
    outcome = {cell.code: [g.name for g in pick(groups, cell)[1]] for cell in CELLS}
    assert outcome["FP"] == ["d"]  # negative d is called positive by every rule here


def test_a_grouped_toy_run_reports_both_levels_and_the_strips(toy_site, toy_recipe, tmp_path, monkeypatch):
    import toy_ctframe

    def with_groups(*args, **kwargs):
        splits = DataSplits(*args, **kwargs)
        ids = [sid for split in (splits.train, splits.val, splits.test) for sid in split.ids]
        groups = {sid: f"{sid.split('/')[0]}-{int(sid.split('/')[1]) % 8}" for sid in ids}
        return DataSplits(*args, **kwargs, groups=groups, group_unit="patient")

    monkeypatch.setattr(toy_ctframe, "DataSplits", with_groups)
    assert (
        main(["run", str(toy_recipe), "--output", str(tmp_path / "runs"), "--set", "trainer.epochs=2"]) == 0
    )
    (run,) = (tmp_path / "runs").iterdir()
    page = (run / "report.html").read_text()
    record = json.loads((run / "metrics.json").read_text())["models"]["toy"]["group_level"]
    assert "<h3>Per patient</h3>" in page and f"{record['groups']} test patient groups" in page
    assert 'id="groups"' in page and (run / "plots" / "groups_toy.png").is_file()
    shown = page.count("<h4>TP: patient ") + page.count("<h4>FP: patient ") + page.count("<h4>FN: patient ")
    shown += page.count("<h4>TN: patient ")
    assert 1 <= shown <= 8
    from rich.console import Console

    from ctframe.workflows.compare import compare_runs

    comparison = compare_runs([run])
    rows = comparison.as_dict()["runs"][0]["models"]["toy"]
    accuracy = rows["per_patient.toy_accuracy"]
    assert accuracy["value"] == record["metrics"]["toy_accuracy"]["value"] and accuracy["title"].endswith(
        " per patient"
    )
    console = Console(record=True, width=200)
    console.print(comparison)
    assert "per patient" in console.export_text()
