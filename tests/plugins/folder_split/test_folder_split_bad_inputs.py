"""Every kind of bad input fails before training with one line naming it (or is skipped and recorded)."""

from __future__ import annotations

import csv
import logging
import os

import pytest
from folder_split_support import CLASSES, bomb_png, build, context, image_bytes, make_folder, options
from pydantic import ValidationError

from ctframe import DataError
from tests.conftest import SHARED_DATA

SHARED_SAMPLES = SHARED_DATA


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_root_names_the_folder_and_the_download_hint(tmp_path):
    with pytest.raises(DataError) as error:
        build(tmp_path / "nowhere", download_hint="download the data set and unpack it there")
    message = one_line(error)
    assert "nowhere does not exist" in message and "download the data set" in message


def test_missing_root_with_demo_if_missing_generates_demo_data(tmp_path, monkeypatch):
    import functools

    import ctframe_folder_split.demo as demo

    small = functools.partial(demo.generate_demo_data, per_class=12, size=24)  # the defaults, only smaller
    monkeypatch.setattr(demo, "generate_demo_data", small)
    data = build(tmp_path / "demo", demo_if_missing=True, image_size=16)
    assert len(data.train) + len(data.val) + len(data.test) == 24
    assert (tmp_path / "demo" / "COVID").is_dir()


def test_missing_class_folder(tmp_path):
    (tmp_path / "COVID").mkdir()
    (tmp_path / "COVID" / "a.png").write_bytes(image_bytes(1))
    with pytest.raises(DataError) as error:
        build(tmp_path)
    assert "non-COVID missing" in one_line(error) and "found: COVID" in one_line(error)


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path, per_class=4)
    for path in (tmp_path / "non-COVID").iterdir():
        path.unlink()
    with pytest.raises(DataError) as error:
        build(tmp_path)
    assert "non-COVID" in one_line(error) and "hold no files" in one_line(error)


def test_a_single_class_is_refused_by_the_options(tmp_path):
    with pytest.raises(ValidationError, match="at least 2"):
        options(tmp_path, classes=["COVID"])
    with pytest.raises(ValidationError, match="not one of classes"):
        options(tmp_path, positive_class="flu")


def test_too_few_images_for_three_splits(tmp_path):
    make_folder(tmp_path, per_class=2)
    with pytest.raises(DataError) as error:
        build(tmp_path)
    assert "only 2 independent group" in one_line(error)


def bad_folder(tmp_path):
    make_folder(tmp_path, per_class=8)
    folder = tmp_path / "COVID"
    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"this is not an image\n")
    (folder / "truncated.png").write_bytes(image_bytes(77, size=(64, 64))[:300])
    (folder / "bomb.png").write_bytes(bomb_png())
    os.symlink("loop.png", folder / "loop.png")  # points at itself
    os.symlink("..", folder / "parent")  # a folder loop
    return {
        "COVID/zero.png": "empty file",
        "COVID/notes.png": "not an image",
        "COVID/truncated.png": "corrupt or truncated",
        "COVID/bomb.png": "decompression bomb",
        "COVID/loop.png": "symlink loop",
        "COVID/parent": "symlink loop",
    }


def test_error_mode_lists_every_bad_file_in_one_line(tmp_path):
    expected = bad_folder(tmp_path)
    with pytest.raises(DataError) as error:
        build(tmp_path)
    message = one_line(error)
    assert f"{len(expected)} unusable file(s)" in message and 'on_bad_image = "skip"' in message
    for file, reason in expected.items():
        assert f"{file} ({reason}" in message


def test_skip_mode_records_each_bad_file_and_logs_it(tmp_path, caplog):
    expected = bad_folder(tmp_path)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="ctframe.test"):
        data = build(tmp_path, run_dir=run, on_bad_image="skip")
    assert {item["file"] for item in data.summary["skipped"]} == set(expected)
    used = set(data.train.sample_ids) | set(data.val.sample_ids) | set(data.test.sample_ids)
    assert len(used) == 16 and not used & set(expected)
    with open(run / "split_manifest.csv", newline="") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    for file, reason in expected.items():
        assert rows[file]["status"].startswith(f"skipped: {reason}") and rows[file]["split"] == ""
        assert any(file in record.getMessage() for record in caplog.records)


def test_a_long_list_of_bad_files_is_truncated_with_a_count(tmp_path):
    make_folder(tmp_path, per_class=4)
    for k in range(30):
        (tmp_path / "non-COVID" / f"empty{k:02d}.png").write_bytes(b"")
    with pytest.raises(DataError) as error:
        build(tmp_path)
    message = one_line(error)
    assert "30 unusable file(s)" in message and "and 22 more" in message and len(message) < 600


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    make_folder(tmp_path, per_class=4)
    secret = tmp_path / "COVID" / "secret.png"
    secret.write_bytes(image_bytes(5))
    if os.geteuid() == 0:  # root reads anything: make the read fail the way chmod 000 would
        import ctframe_folder_split.scan as scan

        real = scan.read_file

        def deny(path, **kwargs):
            if path == secret:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, **kwargs)

        monkeypatch.setattr(scan, "read_file", deny)
    else:
        secret.chmod(0)
    with pytest.raises(DataError) as error:
        build(tmp_path)
    assert "COVID/secret.png (unreadable (permission denied))" in one_line(error)


def test_class_left_empty_after_skipping(tmp_path):
    make_folder(tmp_path, per_class=4)
    for path in (tmp_path / "non-COVID").iterdir():
        path.write_bytes(b"")
    with pytest.raises(DataError) as error:
        build(tmp_path, on_bad_image="skip")
    assert "non-COVID have no usable image" in one_line(error)


def test_hidden_files_are_ignored_but_recorded(tmp_path):
    make_folder(tmp_path, per_class=4)
    (tmp_path / "COVID" / ".DS_Store").write_bytes(b"\x00\x01")
    data = build(tmp_path)
    assert data.summary["ignored"] == ["COVID/.DS_Store"]


def test_grouping_errors_are_one_line(tmp_path):
    make_folder(tmp_path, per_class=4)
    with pytest.raises(DataError) as error:
        build(tmp_path, group_by=r"regex:patient(\d+)")
    assert "matches no part of 8 file name(s)" in one_line(error)
    table = tmp_path / "groups.csv"
    table.write_text("file,patient\nCOVID/img000.png,p1\n")
    with pytest.raises(DataError) as error:
        build(tmp_path, group_by=str(table), group_column="patient")
    assert "7 file(s) have no group in groups.csv" in one_line(error)
    table.write_text("file,patient\nimg000.png,p1\n")  # bare names match in every class folder
    with pytest.raises(DataError) as error:
        build(tmp_path, group_by=str(table), group_column="patient")
    assert "6 file(s) have no group" in one_line(error)
    with pytest.raises(DataError) as error:
        build(tmp_path, group_by=str(table))
    assert "needs columns 'file' and 'group'" in one_line(error)
    with pytest.raises(DataError) as error:
        build(tmp_path, group_by=str(tmp_path / "absent.csv"))
    assert "absent.csv does not exist" in one_line(error)
    assert CLASSES  # the layout those messages refer to


def test_the_check_refuses_bad_files_before_any_run_directory(tmp_path):
    """In error mode the dataset's check (run before a run directory exists) finds what the scan finds."""
    from ctframe_folder_split.factory import check

    expected = bad_folder(tmp_path)
    (tmp_path / "non-COVID" / "cut.jpg").write_bytes(image_bytes(78, size=(64, 64), fmt="JPEG")[:-200])
    expected["non-COVID/cut.jpg"] = "corrupt or truncated JPEG"
    with pytest.raises(DataError) as checked:
        check(options(tmp_path), context())
    with pytest.raises(DataError) as scanned:
        build(tmp_path)
    for error in (checked, scanned):
        message = one_line(error)
        assert f"{len(expected)} unusable file(s)" in message
        for file, reason in expected.items():
            assert f"{file} ({reason}" in message
    check(options(tmp_path, on_bad_image="skip"), context())  # skip mode: the scan records them later


def test_the_check_accepts_every_file_the_scan_accepts(tmp_path):
    """No false alarms: formats, modes and the real samples (JPEGs named .png included) pass the check."""
    from ctframe_folder_split.decode import BadImage, decode_canonical, verify_image

    for k, (fmt, mode) in enumerate(
        [
            ("PNG", "RGBA"),
            ("PNG", "P"),
            ("PNG", "L"),
            ("JPEG", "RGB"),
            ("JPEG", "L"),
            ("BMP", "RGB"),
            ("TIFF", "RGB"),
            ("GIF", "P"),
            ("WEBP", "RGB"),
        ]
    ):
        verify_image(image_bytes(k, size=(40, 30), fmt=fmt, mode=mode), 10_000)
    files = [path for path in SHARED_SAMPLES.rglob("*") if path.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not files:
        pytest.skip("the shared samples are not here")
    for path in files:
        data = path.read_bytes()
        try:
            decode_canonical(data, 16, 64_000_000)
        except BadImage:
            continue
        verify_image(data, 64_000_000)


@pytest.mark.parametrize(
    ("test_fraction", "val_fraction", "left"),
    [(0.9, 0.9, "1.0%"), (0.9, 0.15, "8.5%"), (0.3, 0.6, "28.0%")],
)
def test_split_fractions_that_leave_too_little_training_data_are_refused(
    tmp_path, test_fraction, val_fraction, left
):
    with pytest.raises(ValidationError) as error:
        options(tmp_path, test_fraction=test_fraction, val_fraction=val_fraction)
    message = error.value.errors()[0]["msg"]
    assert error.value.errors()[0]["loc"] == ("val_fraction",)
    assert f"leave {left} of each class for training" in message
    assert "val_fraction is a share of what the test part leaves" in message and "\n" not in message
    options(tmp_path, test_fraction=0.5, val_fraction=0.5)  # 25 / 25 / 50 is a choice, not a mistake
    options(tmp_path, test_fraction=0.15, val_fraction=0.18)
