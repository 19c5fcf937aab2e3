"""ctframe audit on CT trees: counts, acquisition fields per class, the acquisition-shortcut warning,
no ids in the output, and image folders still audited by folder_split."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from ctframe_ct_volumes.audit import AUDIT_OPTIONS, audit_ct_volumes, audited_keywords, looks_like_ct
from ctframe_ct_volumes.pseudonym import KEY_ENV, allowed_fields
from ctframe_ct_volumes.synthetic import write_synthetic_set
from PIL import Image

from ctframe import RecipeError
from ctframe.commands.main import main

MARKER = "ZQXAUDITMARK"
SHORTCUT = {"nodule": {"Manufacturer": "OtherCo", "ConvolutionKernel": "FC51"}}


def _set(root: Path, **kwargs):
    return write_synthetic_set(root, patients=12, slices=3, size=(16, 16), **kwargs)


def _section(report, start: str):
    return next(section for section in report.sections if section.title.startswith(start))


def _verdicts(report) -> dict[str, str]:
    return {row[0]: row[-1] for row in _section(report, "Acquisition shortcut").rows}


def test_a_class_from_another_scanner_is_flagged_by_field(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)  # no key: the audit shows no ids and needs none
    _set(tmp_path / "ct", acquisition=SHORTCUT)
    report = audit_ct_volumes(tmp_path / "ct", {})
    assert _section(report, "Series, slices").rows == [
        ["normal", 6, 18, 6],
        ["nodule", 6, 18, 6],
        ["all", 12, 36, 12],
    ]
    assert _section(report, "Skipped").rows == [["neither DICOM nor NIfTI", 1]]  # labels.csv
    fields = {(row[0], row[1]): row[2:] for row in _section(report, "Acquisition fields").rows}
    assert fields[("manufacturer", "OtherCo")] == ["0 (0%)", "6 (100%)"]
    assert fields[("convolution kernel", "B30f")] == ["6 (100%)", "0 (0%)"]
    assert fields[("kVp", "120")] == ["6 (100%)", "6 (100%)"]
    verdicts = _verdicts(report)
    assert verdicts["manufacturer"] == verdicts["convolution kernel"] == "SHORTCUT"
    assert verdicts["kVp"] == verdicts["slice thickness (mm)"] == "-"
    (warning,) = report.warnings
    assert (
        "manufacturer (1.00)" in warning and "convolution kernel (1.00)" in warning and "kVp" not in warning
    )


def test_one_scanner_for_all_classes_gives_no_warning(tmp_path):
    _set(tmp_path / "ct")
    report = audit_ct_volumes(tmp_path / "ct", {"classes": "normal,nodule", "labels": "labels.csv"})
    assert report.warnings == []
    assert set(_verdicts(report).values()) == {"-"}
    scores = [float(row[2]) for row in _section(report, "Acquisition shortcut").rows]
    assert max(scores) < 0.8


def test_json_output_holds_no_id(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k" * 40)  # with a key set, pseudonyms still stay out of the report
    _set(tmp_path / "ct", marker=MARKER, acquisition=SHORTCUT)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["audit", str(tmp_path / "ct"), "--json"]) == 0
    text = out.getvalue()
    report = json.loads(text)
    assert any("manufacturer" in warning for warning in report["warnings"])
    assert MARKER not in text and "case0" not in text  # no raw ids, no series folders
    assert not re.search(r"\b(p|st|se)-[0-9a-f]{16}\b", text)  # no pseudonyms either


def test_image_folders_go_to_folder_split(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("COVID", "non-COVID"):
        (tmp_path / name).mkdir()
        for k in range(4):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"img{k}.png")
    assert not looks_like_ct(tmp_path)
    assert audit_ct_volumes(tmp_path, {"classes": "COVID,non-COVID"}) is None
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["audit", str(tmp_path), "--json", "--set", "image_size=16"]) == 0
    report = json.loads(out.getvalue())
    assert any(section["title"].startswith("Files per class") for section in report["sections"])


def test_options_and_fields_are_checked(tmp_path):
    _set(tmp_path / "ct")
    with pytest.raises(RecipeError, match="unknown audit option"):
        audit_ct_volumes(tmp_path / "ct", {"image_size": "16"})
    with pytest.raises(RecipeError, match="two classes"):
        audit_ct_volumes(tmp_path / "ct", {"classes": "normal"})
    assert "labels" in AUDIT_OPTIONS
    assert set(audited_keywords()) <= set(allowed_fields()) and len(audited_keywords()) == 7
