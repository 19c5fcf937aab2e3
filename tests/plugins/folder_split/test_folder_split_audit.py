"""ctframe_audit: counts, distributions, duplicates and the metadata-shortcut warning."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from folder_split_support import CLASSES, image_bytes, make_folder
from PIL import Image

from ctframe.registry.plugins import build_registry
from tests.conftest import SHARED_DATA

SAMPLE = SHARED_DATA / "sarscov2-ct-sample"


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


# --- groups, pixel shortcuts, broken classes ---------------------------------------------------------


def _noise_folder(root: Path, base: dict[str, int], per_class: int = 30, tint: dict[str, int] | None = None):
    """Random-texture images whose storage (mode, format, size) is balanced across classes: only the
    brightness ``base`` (and an optional red ``tint`` on every other file) depends on the class."""
    rng = np.random.default_rng(0)
    sizes = [(20, 16), (24, 18), (16, 20)]
    for class_name in CLASSES:
        folder = root / class_name
        folder.mkdir(parents=True)
        for k in range(per_class):
            width, height = sizes[k % 3]
            grey = base[class_name] + rng.integers(0, 100, (height, width))
            pixels = np.repeat(grey[:, :, None], 3, axis=2)
            mode = "RGB" if k % 2 else "L"
            if tint and k % 2:
                pixels[:, :, 0] += tint.get(class_name, 0)
            image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
            image = image if mode == "RGB" else image.convert("L")
            fmt = "PNG" if k % 4 < 2 else "BMP"
            image.save(folder / f"img{k:03d}.{fmt.lower()}", fmt)
    return root


def test_brightness_that_follows_the_class_is_a_pixel_shortcut_not_a_metadata_one(tmp_path):
    report = audit(_noise_folder(tmp_path, {"COVID": 60, "non-COVID": 100}), image_size="16")
    metadata = {row[0]: row[-1] for row in section(report, "Metadata shortcut").rows}
    assert set(metadata) >= {"file size (bytes)", "mode + format + size + bytes"}
    assert set(metadata.values()) == {"-"}
    assert not any("metadata alone" in warning for warning in report.warnings)
    pixels = {row[0]: row for row in section(report, "Pixel shortcut:").rows}
    assert pixels["intensity (mean, sd, percentiles)"][-1] == "SHORTCUT"
    assert float(pixels["all pixel statistics"][1].rstrip("%")) > 90
    assert pixels["colour (channel differences)"][-1] == "-"
    warning = next(w for w in report.warnings if "statistics of the converted images" in w)
    assert "no format conversion can remove it" in warning and "external test set" in warning


def test_same_brightness_gives_no_pixel_shortcut(tmp_path):
    report = audit(_noise_folder(tmp_path, {"COVID": 80, "non-COVID": 80}), image_size="16")
    assert {row[-1] for row in section(report, "Pixel shortcut:").rows} == {"-"}
    assert not any("converted images" in warning for warning in report.warnings)


def test_a_storage_difference_inside_one_class_that_survives_conversion_is_flagged(tmp_path):
    # COVID: its RGB files carry a red tint, its greyscale ones do not; non-COVID: no tint at all.
    root = _noise_folder(tmp_path, {"COVID": 80, "non-COVID": 80}, tint={"COVID": 12})
    report = audit(root, image_size="16")
    rows = {(row[0], row[1]): row for row in section(report, "Pixel shortcut within a class").rows}
    assert rows[("COVID", "colour mode")][-1] == "SHORTCUT"
    assert rows[("non-COVID", "colour mode")][-1] == "-"
    assert any("within COVID" in w and "conversion cannot remove" in w for w in report.warnings)


def test_groups_section_and_timing(tmp_path):
    from ctframe_folder_split.demo import generate_demo_data

    root = generate_demo_data(tmp_path / "demo", per_class=40, size=48)
    # demo v2's haze-filled COVID lungs link one pair of neighbouring patients here (14 of 40 images)
    report = audit(root, image_size="48", max_group_share="0.4")
    groups = section(report, "Groups per class (group_by=sequence, near-copy level 0.95)")
    rows = {row[0]: row for row in groups.rows}
    assert set(rows) == set(CLASSES)
    for row in rows.values():
        images, count = row[1], row[2]
        assert images == 40 and 3 <= count < 40 and "%" in row[4]
    leakage = {row[0]: row[1] for row in section(report, "Near-duplicate leakage").rows}
    assert leakage["group_by=sequence"] == f"{rows['COVID'][2]} / {rows['non-COVID'][2]}"
    stages = [row[0] for row in section(report, "Audit timing").rows]
    assert any(stage.startswith("read, decode") for stage in stages) and "pixel shortcut" in stages
    assert not any("max_group_share" in warning for warning in report.warnings)
    chained = audit(root, image_size="48", max_group_share="0.01")
    assert sum("max_group_share 1%" in warning for warning in chained.warnings) == 2


def test_an_empty_class_folder_is_named(tmp_path):
    from ctframe import DataError

    make_folder(tmp_path, per_class=4)
    for path in (tmp_path / "non-COVID").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="non-COVID") as caught:
        audit(tmp_path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"not an image at all", image_bytes(3)[:40]])
def test_a_class_of_only_unusable_files_is_named_in_the_report(tmp_path, content):
    make_folder(tmp_path, per_class=4)
    for path in (tmp_path / "non-COVID").iterdir():
        path.write_bytes(content)
    report = audit(tmp_path)
    assert section(report, "Files per class").rows[1][:3] == ["non-COVID", 0, 4]
    named = "class(es) non-COVID (4 unusable file(s)) have no usable image"
    assert any(warning.startswith(named) for warning in report.warnings)
    assert len(section(report, "Unusable files").rows) == 4


def test_folders_without_images_next_to_two_classes_are_listed(tmp_path):
    make_folder(tmp_path, per_class=4)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    report = audit(tmp_path, leakage_threshold="0.99")
    assert [row[0] for row in section(report, "Files per class").rows] == CLASSES
    assert any("notes hold no image" in warning for warning in report.warnings)


def test_a_missing_class_folder_is_a_one_line_error(tmp_path):
    from ctframe import DataError

    make_folder(tmp_path, per_class=4)
    with pytest.raises(DataError, match="class folder"):
        audit(tmp_path, classes="COVID,missing")


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared sample data not present")
def test_sample_data_pixel_audit_and_groups():
    report = audit(SAMPLE, image_size="96")
    rows = {(row[0], row[1]): row for row in section(report, "Pixel shortcut within a class").rows}
    assert rows[("COVID", "colour mode")][-1] == "SHORTCUT"  # RGB and RGBA COVID files look different
    groups = {row[0]: row for row in section(report, "Groups per class").rows}
    assert groups["COVID"][1] == 60 and groups["COVID"][2] < 60  # duplicates and runs joined
    verdicts = {row[0]: row[4] for row in section(report, "Near-duplicate leakage").rows}
    assert verdicts["group_by=sequence"] == "quiet"
