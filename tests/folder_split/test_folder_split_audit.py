"""ctframe_audit: counts, distributions, duplicates and the metadata-shortcut warning."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from folder_split_support import CLASSES, image_bytes, make_folder
from PIL import Image

from ctframe.plugins import build_registry

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sarscov2-ct-sample"


def audit(root: Path, **options):
    registry = build_registry(selection="folder_split")
    return registry.manager.hook.ctframe_audit(root=root, options=options)


def section(report, title_start: str):
    return next(s for s in report.sections if s.title.startswith(title_start))


def test_consistent_folder_gives_tables_and_no_shortcut_warning(tmp_path):
    make_folder(tmp_path, per_class=12)
    report = audit(tmp_path, leakage_threshold="0.99")
    assert section(report, "Files per class").rows == [
        ["COVID", 12, 0, "50.0%"],
        ["non-COVID", 12, 0, "50.0%"],
    ]
    assert section(report, "Colour mode").rows == [["RGB", 12, 12]]
    assert not any("metadata alone" in warning for warning in report.warnings)


def test_mode_that_follows_the_class_is_flagged(tmp_path):
    make_folder(tmp_path, per_class=12)
    for path in (tmp_path / "non-COVID").iterdir():  # the sample data's quirk: one class all RGBA
        buffer = io.BytesIO()
        Image.open(path).convert("RGBA").save(buffer, "PNG")
        path.write_bytes(buffer.getvalue())
    (tmp_path / "COVID" / "copy.png").write_bytes((tmp_path / "COVID" / "img000.png").read_bytes())
    (tmp_path / "COVID" / "fake.png").write_bytes(image_bytes(9, fmt="JPEG"))
    (tmp_path / "COVID" / "empty.png").write_bytes(b"")
    report = audit(tmp_path)
    assert section(report, "Colour mode").rows == [["RGB", 14, 0], ["RGBA", 0, 12]]
    shortcut = {row[0]: row[-1] for row in section(report, "Metadata shortcut").rows}
    assert shortcut["colour mode"] == "SHORTCUT" and shortcut["size (width, height)"] == "-"
    assert any("metadata alone predicts the class" in warning for warning in report.warnings)
    assert section(report, "Exact duplicates").rows[0][1] == "within class"
    assert section(report, "Extension differs").rows == [["COVID/fake.png", ".png", "JPEG"]]
    assert section(report, "Unusable files").rows == [["COVID/empty.png", "empty file (0 bytes)"]]


def test_explicit_classes_and_bad_options(tmp_path):
    make_folder(tmp_path, per_class=4)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.png").write_bytes(image_bytes(1))
    report = audit(tmp_path, classes=",".join(CLASSES))
    assert [row[0] for row in section(report, "Files per class").rows] == CLASSES
    from ctframe import RecipeError

    with pytest.raises(RecipeError, match="unknown audit option"):
        audit(tmp_path, colour="red")
    with pytest.raises(RecipeError, match="image_size"):
        audit(tmp_path, image_size="tiny")


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared sample data not present")
def test_sample_data_warns_that_rgba_predicts_non_covid():
    report = audit(SAMPLE, leakage_threshold="0.999")
    modes = {row[0]: row[1:] for row in section(report, "Colour mode").rows}
    assert modes["RGBA"][1] == 60 and modes.get("RGB", [0, 0])[1] == 0
    assert any("colour mode" in warning and "metadata alone" in warning for warning in report.warnings)
    duplicates = {row[3] for row in section(report, "Exact duplicates").rows}
    assert "COVID/Covid (128).png; COVID/Covid (129).png" in duplicates


def test_demo_data_has_no_metadata_shortcut_and_an_image_level_split_leaks(tmp_path):
    from ctframe_folder_split.demo import generate_demo_data

    root = generate_demo_data(tmp_path / "demo", per_class=40, size=48)
    report = audit(root, image_size="48")
    assert not any("metadata alone" in warning for warning in report.warnings)
    verdicts = {row[0]: row[4] for row in section(report, "Near-duplicate leakage").rows}
    assert verdicts == {"image-level": "LEAKY", "group_by=sequence": "quiet"}
    assert np.isfinite(len(report.sections))
