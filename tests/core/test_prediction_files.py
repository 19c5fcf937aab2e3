"""Reading predictions files for ``ctframe metrics`` (issues 25 and 26): another tool's label and score
columns named on the command line (class names or 0/1 labels), the same numbers as ctframe's own layout,
impossible stored thresholds refused in one line. Probabilities fp64 from the CSV text."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ctframe import DataError
from ctframe.workflows.prediction_files import Columns, read_predictions

CLASSES = ("non-COVID", "COVID")


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _scores(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    return labels, np.round(np.clip(0.3 + 0.4 * labels + rng.normal(0, 0.2, n), 0, 1), 4)


def test_another_tools_columns_read_as_ctframes_own(tmp_path):
    labels, scores = _scores()
    own = _write(
        tmp_path / "own.csv",
        ["sample_id", "true_class", "p_non-COVID", "p_COVID"],
        [[f"s{i}", CLASSES[y], 1 - s, s] for i, (y, s) in enumerate(zip(labels, scores, strict=True))],
    )
    names = _write(
        tmp_path / "names.csv",
        ["id", "label", "prob_covid"],
        [[f"s{i}", CLASSES[y], s] for i, (y, s) in enumerate(zip(labels, scores, strict=True))],
    )
    binary = _write(
        tmp_path / "binary.csv",
        ["label", "prob_covid"],
        [[y, s] for y, s in zip(labels, scores, strict=True)],
    )
    expected = read_predictions(own, "COVID", None)
    for path in (names, binary):
        found = read_predictions(path, None, None, Columns("label", "prob_covid", CLASSES))
        assert found.classes == CLASSES and found.positive == "COVID" and found.threshold == 0.5
        np.testing.assert_array_equal(found.predictions.labels, expected.predictions.labels)
        np.testing.assert_allclose(
            found.predictions.probabilities, expected.predictions.probabilities, atol=1e-12
        )


@pytest.mark.parametrize(
    "header, rows, columns, message",
    [
        (["label", "p"], [[1, 0.3]], Columns("label", "p"), "--classes NEGATIVE,POSITIVE"),
        (["label", "p"], [[1, 0.3]], Columns("label", None, CLASSES), "--score-column"),
        (["label", "p"], [[1, 0.3]], Columns("truth", "p", CLASSES), "--true-column 'truth' is not a column"),
        (
            ["label", "p"],
            [[1, 0.3]],
            Columns("label", "score", CLASSES),
            "--score-column 'score' is not a column",
        ),
        (["label", "p"], [[2, 0.3]], Columns("label", "p", CLASSES), "line 2: label '2' is not one of"),
        (["label", "p"], [[1, 1.3]], Columns("label", "p", CLASSES), "must hold probabilities in [0, 1]"),
        (
            ["label", "p"],
            [[1, "high"]],
            Columns("label", "p", CLASSES),
            "line 2: a probability is not a number",
        ),
        (["label", "p"], [], Columns("label", "p", CLASSES), "no rows to score"),
        (
            ["true_class", "p_a", "p_b", "threshold"],
            [["a", 0.4, 0.6, "nan"]],
            None,
            "'threshold' holds 'nan'",
        ),
        (
            ["true_class", "p_a", "p_b", "threshold"],
            [["a", 0.4, 0.6, "1.5"]],
            None,
            "'threshold' holds '1.5'",
        ),
        (
            ["true_class", "p_a", "p_b", "positive_class"],
            [["a", 0.4, 0.6, "a"], ["b", 0.3, 0.7, "b"]],
            None,
            "'positive_class' holds several values",
        ),  # fmt: skip
        (
            ["label", "prob_covid"],
            [["COVID", 0.4]],
            None,
            "or name another tool's columns with --true-column",
        ),
    ],
)
def test_bad_files_are_one_line(tmp_path, header, rows, columns, message):
    path = _write(tmp_path / "p.csv", header, rows)
    with pytest.raises(DataError) as error:
        positive = "b" if columns is None and "positive_class" not in header else None
        read_predictions(path, positive, None, columns)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_metrics_command_maps_columns(tmp_path, monkeypatch):
    import json

    from ctframe.registry.plugins import PLUGINS_ENV
    from tests.core.hostile_support import invoke

    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    labels, scores = _scores()
    path = _write(
        tmp_path / "tool.csv", ["label", "prob_covid"], [[y, s] for y, s in zip(labels, scores, strict=True)]
    )
    argv = ["metrics", str(path), "--true-column", "label", "--score-column", "prob_covid"]
    code, out, err = invoke([*argv, "--classes", "non-COVID,COVID", "--bootstrap", "0", "--json"])
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert metrics["positive_class"] == "COVID" and metrics["class_names"] == ["non-COVID", "COVID"]
    code, out, err = invoke([*argv, "--bootstrap", "0", "-o", str(tmp_path / "again")])
    assert code == 2 and "--classes NEGATIVE,POSITIVE" in err
