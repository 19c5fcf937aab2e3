"""The cross-validation report reads its folds' histories (issue 25): one figure per model with a line
per fold, instead of saying that the trainer recorded no history. Built from files alone."""

from __future__ import annotations

import base64
import json
import re

from ctframe.report import build_report

HEADER = "epoch,phase,train_loss,val_loss,val_accuracy,seconds\n"


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([a-z_]+)">(.*?)</section>', page, flags=re.S))


def _history(epochs: int, shift: float) -> str:
    rows = [
        f"{e},initial,{1 - e * 0.1:.2f},{1.1 - e * 0.1 + shift:.2f},{0.5 + e * 0.05:.2f},1\n"
        for e in range(1, epochs + 1)
    ]
    return HEADER + "".join(rows)


def test_a_cv_report_plots_every_folds_history(tmp_path):
    models = {"initial": {"key": "initial", "title": "Initial Model"}}
    (tmp_path / "metrics.json").write_text(json.dumps({"class_names": ["a", "b"], "models": models}))
    for fold, epochs in ((0, 3), (1, 5), (2, 4)):
        folder = tmp_path / f"fold-{fold}"
        folder.mkdir()
        (folder / "history_initial.csv").write_text(_history(epochs, fold * 0.05))
    (tmp_path / "fold-3").mkdir()
    (tmp_path / "fold-3" / "history_initial.csv").write_text("")  # a damaged fold costs only itself
    training = _sections(build_report(tmp_path).read_text(encoding="utf-8"))["training"]
    assert "recorded no per-epoch history" not in training
    assert "Epochs per fold: fold 0: 3, fold 1: 5, fold 2: 4." in training
    (png,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', training)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert (tmp_path / "plots" / "training_initial.png").is_file()


def test_a_folder_without_any_history_still_says_so(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"class_names": ["a", "b"], "models": {}}))
    (tmp_path / "fold-0").mkdir()
    training = _sections(build_report(tmp_path).read_text(encoding="utf-8"))["training"]
    assert "recorded no per-epoch history" in training
