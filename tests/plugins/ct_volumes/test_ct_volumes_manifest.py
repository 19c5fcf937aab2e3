"""volumes_manifest.csv: written inside a run, recorded in integrity.json, one row per slice with
pseudonyms and allow-listed fields only; a resume on data that no longer matches is one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from ctframe_ct_volumes.factory import build
from ctframe_ct_volumes.manifest import COLUMNS
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV
from ctframe_ct_volumes.run_files import VOLUMES_MANIFEST
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe import BuildContext, DataError
from ctframe.storage import integrity
from ctframe.storage.rundir import RunDirectory

KEY = "0123456789abcdef" * 4
MARKER = "SECRETM"
PATIENTS, SLICES = 8, 3


@pytest.fixture(scope="module")
def ct_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ct-manifest") / "set"
    write_synthetic_set(root, patients=PATIENTS, slices=SLICES, size=(16, 16), marker=MARKER)
    return root


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def _options(root: Path, **changes) -> CtVolumesOptions:
    values = {"root": root, "labels": root / "labels.csv", "classes": ["normal", "nodule"]}
    values |= {"positive_class": "nodule", "image_size": 16, **changes}
    return CtVolumesOptions.model_validate(values, context={"base_dir": root})


def _run(folder: Path) -> RunDirectory:
    folder.mkdir()
    run = RunDirectory(folder)
    integrity.start(run)
    return run


def _context(root: Path, run: RunDirectory | None) -> BuildContext:
    return BuildContext(seed=0, device="cpu", recipe_dir=root, run_dir=run)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_run_writes_one_recorded_row_per_sample(ct_set, tmp_path):
    run = _run(tmp_path / "run")
    data = build(_options(ct_set), _context(ct_set, run))
    path = VOLUMES_MANIFEST.path(run)
    rows = _rows(path)
    assert tuple(rows[0]) == COLUMNS and len(rows) == PATIENTS * SLICES
    splits = {split: set(getattr(data, split).sample_ids) for split in ("train", "val", "test")}
    for row in rows:
        assert row["sample_id"] in splits[row["split"]]
        assert row["sample_id"] == f"{row['series']}/{int(row['slice']):04d}"
        assert data.groups[row["sample_id"]] == row["patient"] and row["patient"].startswith("p-")
        assert row["study"].startswith("st-") and row["patient_source"] == "PatientID"
        assert row["label"] in ("normal", "nodule")
    first = rows[0]
    assert (first["Manufacturer"], first["ConvolutionKernel"], first["KVP"]) == ("ctframe", "B30f", "120.0")
    assert first["ContrastBolusAgent"] in ("true", "false") and first["Rows"] == "16"
    assert MARKER.lower() not in path.read_text().lower()
    recorded = json.loads((run.path / "integrity.json").read_text())["files"][VOLUMES_MANIFEST.name]
    assert recorded["kind"] == "manifest"


def test_no_manifest_outside_a_run(ct_set, tmp_path):
    build(_options(ct_set), _context(ct_set, None))
    assert not list(tmp_path.iterdir())


def test_a_resume_on_the_same_data_passes_and_on_changed_data_is_one_line(tmp_path):
    root = tmp_path / "set"  # changed in place: series without a valid UID are keyed by their folder
    write_synthetic_set(root, patients=PATIENTS, slices=SLICES, size=(16, 16), marker=MARKER)
    run = _run(tmp_path / "run")
    build(_options(root), _context(root, run))
    before = VOLUMES_MANIFEST.path(run).read_bytes()
    build(_options(root), _context(root, run))  # same data: accepted, file unchanged
    assert VOLUMES_MANIFEST.path(run).read_bytes() == before
    table = (root / "labels.csv").read_text()
    flipped = {"normal": "nodule", "nodule": "normal"}
    lines = [line if "0002" not in line else ",".join(line.split(",")[:-1] + [flipped[line.split(",")[-1]]])
             for line in table.splitlines()]  # fmt: skip
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"no longer matches .*slice\(s\) changed"):
        build(_options(root), _context(root, run))
    (root / "labels.csv").write_text(table)
    shutil.rmtree(root / "case001")
    labels = [line for line in (root / "labels.csv").read_text().splitlines() if "0001" not in line]
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    with pytest.raises(DataError) as caught:
        build(_options(root), _context(root, run))
    message = str(caught.value)
    assert "\n" not in message and "no longer matches" in message and f"{SLICES} slice(s) removed" in message
    assert MARKER.lower() not in message.lower() and VOLUMES_MANIFEST.path(run).read_bytes() == before
