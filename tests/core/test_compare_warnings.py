"""``ctframe compare`` warns when runs differ in positive class, classes, test set or seed (issue 25),
and gives the same as JSON. Runs are hand-made folders: recipe.toml, metrics.json and a predictions file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctframe.workflows.compare import compare_runs
from tests.core.hostile_support import invoke

MODELS = {"m": {"title": "Model", "metrics": {"accuracy": {"title": "Accuracy", "value": 0.9}}}}


def _run(folder: Path, seed=1, positive="b", classes=("a", "b"), ids=("x1", "x2", "x3")) -> Path:
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(f'[run]\nseed = {seed}\n\n[dataset]\ncomponent = "d"\n')
    metrics = {"positive_class": positive, "class_names": list(classes), "models": MODELS}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = "".join(f"{i},{classes[0]}\n" for i in ids)
    (folder / "predictions_m.csv").write_text("sample_id,true_class\n" + rows)
    return folder


@pytest.mark.parametrize(
    "change, fact",
    [
        ({"positive": "a"}, "positive class"),
        ({"classes": ("a", "c"), "positive": "c"}, "classes"),
        ({"ids": ("x1", "x2", "x4")}, "test set"),
        ({"ids": ("x1", "x2")}, "test set"),
        ({"seed": 2}, "seed"),
    ],
)
def test_a_difference_is_named(tmp_path, change, fact):
    runs = [_run(tmp_path / "one"), _run(tmp_path / "two", **change)]
    warnings = compare_runs(runs).warnings()
    assert any(line.startswith(f"the runs differ in {fact}") for line in warnings), warnings
    assert all("one:" in line and "two:" in line for line in warnings)


def test_equal_runs_and_the_order_of_test_ids_raise_nothing(tmp_path):
    runs = [_run(tmp_path / "one"), _run(tmp_path / "two", ids=("x3", "x1", "x2"))]
    assert compare_runs(runs).warnings() == []


def test_the_command_warns_on_stderr_and_json_carries_the_warnings(tmp_path):
    runs = [str(_run(tmp_path / "one")), str(_run(tmp_path / "two", seed=5))]
    code, out, err = invoke(["compare", *runs])
    assert code == 0 and "Accuracy" in out
    assert err.strip().startswith("warning: the runs differ in seed") and "one: 1; two: 5" in err
    code, out, _ = invoke(["compare", *runs, "--json"])
    assert code == 0 and json.loads(out)["warnings"][0].startswith("the runs differ in seed")
