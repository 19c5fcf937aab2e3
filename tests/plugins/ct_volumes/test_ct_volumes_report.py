"""ct_volumes' "Example slices" report section: test slices per class read again through the dataset's
reader, present only for its runs, and one line instead when the pseudonym key is missing."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV, Pseudonymizer
from ctframe_ct_volumes.reader import CtVolumesReader
from ctframe_ct_volumes.report import KEY, choose
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe.registry.plugins import PLUGINS_ENV
from ctframe.report import build_report
from ctframe.storage.files import write_text
from tests.core.test_report import embedded_pngs, make_run, sections_of

SECRET = "s" * 40
SIZE = 24


def ct_run(folder: Path, monkeypatch) -> Path:
    """The core's files of a run whose recipe names ct_volumes over a synthetic set, and a manifest
    of that set's slices (series alternate between classes; every other series is a test series)."""
    data = folder / "data"
    write_synthetic_set(data, patients=4, slices=3, size=(16, 16))
    run = make_run(folder / "run", monkeypatch)
    recipe = (
        f'[dataset]\ncomponent = "ct_volumes"\nroot = "{data}"\nclasses = ["normal", "nodule"]\n'
        f'positive_class = "nodule"\nimage_size = {SIZE}\nwindow = "lung"\n'
    )
    write_text(run / "recipe.toml", recipe)
    options = CtVolumesOptions.model_validate(
        {"root": data, "classes": ["normal", "nodule"], "positive_class": "nodule", "image_size": SIZE}
    )
    ids = CtVolumesReader(options, Pseudonymizer(SECRET.encode())).read([data]).images.sample_ids
    series = sorted({sample.split("/")[0] for sample in ids})
    with (run / "volumes_manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "split", "label", "series"])
        for sample in sorted(ids):
            number = series.index(sample.split("/")[0])
            split = "test" if number < 2 or number == 3 else "train"
            writer.writerow([sample, split, ("normal", "nodule")[number % 2], sample.split("/")[0]])
    monkeypatch.setenv(PLUGINS_ENV, "ct_volumes,classification_metrics")
    return run


def _section(run: Path) -> str | None:
    return sections_of(build_report(run).read_text(encoding="utf-8")).get(KEY)


def test_choose_takes_middle_slices_of_test_series_first_per_class():
    rows = [
        {"sample_id": f"se-{s}/{i:04d}", "split": split, "label": label, "series": f"se-{s}"}
        for s, split, label in (
            ("a", "test", "x"),
            ("b", "test", "x"),
            ("c", "train", "x"),
            ("d", "test", "y"),
        )
        for i in range(3)
    ]
    assert choose(rows, per_class=3) == [
        ("se-a/0001", "x"),
        ("se-b/0001", "x"),
        ("se-a/0000", "x"),
        ("se-d/0001", "y"),
        ("se-d/0000", "y"),
        ("se-d/0002", "y"),
    ]


def test_a_ct_volumes_run_shows_test_slices_per_class_as_thumbnails(tmp_path, monkeypatch):
    run = ct_run(tmp_path, monkeypatch)
    monkeypatch.setenv(KEY_ENV, SECRET)
    section = _section(run)
    assert section is not None
    pictures = embedded_pngs(section)
    assert len(pictures) == 7  # normal: one test series of 3 slices; nodule: two series, capped at 4
    assert all(picture.startswith(b"\x89PNG") for picture in pictures)
    captions = re.findall(r"<figcaption>(se-[0-9a-f]+/\d{4}) \((\w+)\)</figcaption>", section)
    assert {label for _, label in captions} == {"normal", "nodule"}


def test_a_missing_key_gives_one_line_and_another_dataset_no_section(tmp_path, monkeypatch):
    run = ct_run(tmp_path, monkeypatch)
    monkeypatch.delenv(KEY_ENV, raising=False)
    section = _section(run)
    assert section is not None and not embedded_pngs(section)
    assert section.count("example slices not shown") == 1 and "pseudonym key" in section
    other = make_run(tmp_path / "other", monkeypatch)
    assert KEY not in sections_of(build_report(other).read_text(encoding="utf-8"))
