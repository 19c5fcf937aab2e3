"""ct_volumes end to end: validate, run, predict, evaluate, export (onnx, pt2) and explain on a
synthetic DICOM set whose every identifying tag holds a marker, then search every byte the commands
wrote for it.

One tiny run (recipes/ct_volumes.toml at 32 px, ResNet50V2 with random weights, 1 + 1 epochs) is
shared by the module; a second run checks raw_ids. ``ctframe audit`` is not exercised: ct_volumes
implements no ``ctframe_audit`` hook yet (the acquisition-shortcut audit is still to do).
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import re
import struct
import warnings
import zipfile
import zlib
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from ctframe_ct_volumes.pseudonym import KEY_ENV
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe.commands.main import main
from tests.conftest import REPO

pytestmark = pytest.mark.slow

PLUGINS = "ct_volumes,resnet_v2,dense_head,two_phase,classification_metrics,export,gradcam"
RECIPE = REPO / "recipes" / "ct_volumes.toml"
MARKER = "ZZMARKERZZ"
KEY = "k" * 40
PATIENTS, SLICES = 8, 6
TINY = [
    "backbone.component=resnet50v2",
    "backbone.weights=none",
    "dataset.image_size=32",
    "head.units=16",
    "trainer.initial.epochs=1",
    "trainer.finetuned.epochs=1",
    "trainer.progress=false",
    "evaluation.bootstrap=20",
]


def _overrides(data: Path, *extra: str) -> list[str]:
    values = [f"dataset.root={data}", f"dataset.labels={data / 'labels.csv'}", *TINY, *extra]
    return [argument for value in values for argument in ("--set", value)]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- the byte search --------------------------------------------------------------------------

_DATA_URI = re.compile(rb"data:[\w/+.-]+;base64,([A-Za-z0-9+/=]+)")


def _png_texts(data: bytes) -> list[bytes]:
    """The payloads of a PNG's compressed chunks (zTXt, iTXt, iCCP, IDAT as one stream)."""
    found, idat, position = [], b"", 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IDAT":
            idat += body
        elif kind in (b"zTXt", b"iCCP"):
            found.append(zlib.decompress(body.split(b"\0", 1)[1][1:]))
        elif kind == b"iTXt" and body.split(b"\0", 1)[1][:1] == b"\1":
            found.append(zlib.decompress(body.split(b"\0", 1)[1][2:].split(b"\0", 2)[2]))
    return found + ([zlib.decompress(idat)] if idat else [])


def _layers(data: bytes) -> list[bytes]:
    """``data`` and whatever it holds compressed or encoded inside: gzip, zip members, PNG chunks,
    base64 data URIs (the report embeds its plots), recursively."""
    inner: list[bytes] = []
    if data[:2] == b"\x1f\x8b":
        inner.append(gzip.decompress(data))
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inner += [archive.read(name) for name in archive.namelist()]
            inner.append("\n".join(archive.namelist()).encode())
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        inner += _png_texts(data)
    inner += [base64.b64decode(match) for match in _DATA_URI.findall(data)]
    return [data] + [layer for blob in inner for layer in _layers(blob)]


def leaks(paths: list[Path], needles: list[str]) -> list[str]:
    """``file: needle`` for every file (and file name) under ``paths`` holding a needle, any case."""
    wanted = [needle.lower().encode() for needle in needles]
    found = []
    for path in paths:
        for file in sorted([path] if path.is_file() else path.rglob("*")):
            layers = [str(file.relative_to(path.parent)).encode()]
            if file.is_file():
                layers += _layers(file.read_bytes())
            hits = {n.decode() for n in wanted for layer in layers if n in layer.lower()}
            found += [f"{file}: {hit}" for hit in sorted(hits)]
    return found


def test_the_byte_search_finds_a_marker_in_every_layer(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner.gz", gzip.compress(b"id zzmarkerzz0003"))
    (tmp_path / "model.pt").write_bytes(buffer.getvalue())
    page = b'<img src="data:text/plain;base64,' + base64.b64encode(MARKER.encode()) + b'">'
    (tmp_path / "report.html").write_bytes(page)
    (tmp_path / "clean.json").write_text('{"patient": "p-0123456789abcdef"}')
    assert leaks([tmp_path], [MARKER]) == [
        f"{tmp_path / 'model.pt'}: {MARKER.lower()}",
        f"{tmp_path / 'report.html'}: {MARKER.lower()}",
    ]


# --- the pipeline -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    """The set, then validate, run, predict (a series folder, the whole root) and evaluate on a
    dataset table; return codes, paths, and the console and warnings of all of it."""
    folder = tmp_path_factory.mktemp("ct-e2e")
    data = folder / "data"
    written = write_synthetic_set(data, patients=PATIENTS, slices=SLICES, size=(32, 32), marker=MARKER)
    out = folder / "out"
    out.mkdir()
    external = folder / "external.toml"
    external.write_text(
        f'[dataset]\ncomponent = "ct_volumes"\nroot = "{data}"\nlabels = "{data / "labels.csv"}"\n'
        'classes = ["normal", "nodule"]\npositive_class = "nodule"\nimage_size = 32\n'
    )
    console = io.StringIO()
    codes = {}
    with (
        pytest.MonkeyPatch.context() as patch,
        warnings.catch_warnings(record=True) as caught,
        redirect_stdout(console),
        redirect_stderr(console),
    ):
        warnings.simplefilter("always")
        patch.setenv("CTFRAME_PLUGINS", PLUGINS)
        patch.setenv(KEY_ENV, KEY)
        patch.setenv("CTFRAME_CACHE_DIR", str(folder / "cache"))  # the slice cache is searched too
        torch.set_num_threads(1)
        codes["validate"] = main(["validate", str(RECIPE), *_overrides(data)])
        arguments = ["run", str(RECIPE), "--output", str(folder / "runs"), *_overrides(data)]
        codes["run"] = main(arguments)
        (run,) = (folder / "runs").iterdir()
        codes["series"] = main(["predict", str(run), str(data / "case001"), "-o", str(out / "series.csv")])
        codes["root"] = main(["predict", str(run), str(data), "-o", str(out / "root.csv")])
        codes["evaluate"] = main(["evaluate", str(run), "--data", str(external), "--name", "again"])
        # the check reads the test split's pseudonymous names back under the recipe's root
        codes["onnx"] = main(["export", str(run), "--format", "onnx", "-o", str(out / "model.onnx")])
        series = [str(data / "case002")]
        codes["pt2"] = main(
            ["export", str(run), "-f", "pt2", "-o", str(out / "model.pt2"), "--images", *series]
        )
        codes["explain"] = main(["explain", str(run), str(data / "case001"), "-o", str(out / "explain")])
    messages = [str(w.message) for w in caught]
    return {
        "codes": codes,
        "run": run,
        "out": out,
        "cache": folder / "cache" / "ct_volumes",
        "set": written,
        "console": console.getvalue(),
        "warnings": messages,
    }


def test_validate_run_predict_and_evaluate_succeed(pipeline):
    codes = {
        "validate": 0,
        "run": 0,
        "series": 0,
        "root": 0,
        "evaluate": 0,
        "onnx": 0,
        "pt2": 0,
        "explain": 0,
    }
    assert pipeline["codes"] == codes, pipeline["console"][-3000:]
    run, out = pipeline["run"], pipeline["out"]
    series = _rows(out / "series.csv")
    assert len(series) == SLICES and len({row["file"].split("/")[0] for row in series}) == 1
    assert re.fullmatch(r"se-[0-9a-f]{16}/0000", series[0]["file"])
    assert len(_rows(out / "root.csv")) == PATIENTS * SLICES
    test_rows = _rows(run / "predictions_finetuned.csv")
    assert all(re.fullmatch(r"p-[0-9a-f]{16}", row["group"]) for row in test_rows)
    assert (run / "external" / "again" / "metrics.json").is_file()
    manifest = _rows(run / "volumes_manifest.csv")
    assert len(manifest) == PATIENTS * SLICES
    assert {row["split"] for row in manifest} == {"train", "val", "test"}


def test_predict_answers_per_series_too(pipeline):
    """The reader groups slices by series: predict writes <output>_series.csv, one row per series."""
    out = pipeline["out"]
    one = _rows(out / "series_series.csv")
    assert len(one) == 1 and one[0]["unit"] == "series" and one[0]["images"] == str(SLICES)
    assert one[0]["group"] == _rows(out / "series.csv")[0]["file"].split("/")[0]
    every = _rows(out / "root_series.csv")
    assert sorted(row["group"] for row in every) == sorted({row["group"] for row in _rows(out / "root.csv")})
    assert len(every) == PATIENTS and {row["images"] for row in every} == {str(SLICES)}


def test_export_checks_on_the_test_split_and_explain_reads_a_series_folder(pipeline):
    out = pipeline["out"]
    onnx = json.loads((out / "model.onnx.json").read_text())
    assert onnx["check"]["images"].endswith("of the run's test split")
    assert onnx["check"]["max_abs_diff"] <= onnx["check"]["tolerance"]
    pt2 = json.loads((out / "model.pt2.json").read_text())
    assert pt2["check"]["images"].endswith("of the given images") and (out / "model.pt2").is_file()
    explained = _rows(out / "explain" / "explanations.csv")
    assert len(explained) == SLICES
    assert all(re.fullmatch(r"se-[0-9a-f]{16}/[0-9]{4}", row["sample_id"]) for row in explained)
    overlays = [name for row in explained for key, name in row.items() if key.startswith("overlay_") and name]
    assert len(overlays) == SLICES and all((out / "explain" / name).is_file() for name in overlays)


def test_no_output_holds_an_identifying_value(pipeline):
    written = pipeline["set"]
    needles = [MARKER] + [patient for patient, _ in written.patients]
    assert len(list(pipeline["cache"].glob("*.npy"))) == 2 * PATIENTS  # every series' entry
    found = leaks([pipeline["run"], pipeline["out"], pipeline["cache"]], needles)
    assert not found, "identifying values in outputs:\n" + "\n".join(found)


def test_no_console_line_shows_an_identifying_value(pipeline):
    shown = [line for line in pipeline["console"].splitlines() if MARKER.lower() in line.lower()]
    assert not shown, f"{len(shown)} console lines show identifying values, e.g. {shown[0]}"


def test_no_warning_shows_an_identifying_value(pipeline):
    shown = [message for message in pipeline["warnings"] if MARKER.lower() in message.lower()]
    assert not shown, f"{len(shown)} warnings show identifying values, e.g. {shown[0]}"


def test_raw_ids_writes_raw_ids_and_says_so_in_the_log(pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
    monkeypatch.delenv(KEY_ENV, raising=False)
    torch.set_num_threads(1)
    data = pipeline["set"].root
    arguments = [
        "run",
        str(RECIPE),
        "--output",
        str(tmp_path / "runs"),
        *_overrides(data, "dataset.raw_ids=true"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the marker in invalid UIDs: pydicom's complaint is not tested here
        assert main(arguments) == 0
    (run,) = (tmp_path / "runs").iterdir()
    log = (run / "run.log").read_text()
    assert re.search(r"WARNING .*raw_ids is on", log)
    groups = {row["group"] for row in _rows(run / "predictions_finetuned.csv")}
    assert groups and groups <= {patient for patient, _ in pipeline["set"].patients}


def test_demo_data_dicom_writes_a_set_the_dataset_reads(tmp_path, monkeypatch, capsys):
    from ctframe_ct_volumes.discover import discover

    monkeypatch.setenv("CTFRAME_PLUGINS", "ct_volumes")
    folder = tmp_path / "demo"
    arguments = ["demo-data", str(folder), "--format", "dicom", "--count", "6", "--size", "16"]
    assert main(arguments) == 0
    found = discover(folder)
    assert [series.slice_count for series in found.series] == [16] * 6
    labels = {row["patient_id"]: row["label"] for row in _rows(folder / "labels.csv")}
    assert sorted(labels.values()) == ["nodule"] * 3 + ["normal"] * 3
    assert set(labels) == {series.patient_id for series in found.series}
    assert main(arguments) == 0 and "already there" in capsys.readouterr().out  # safe to re-run
    assert main([*arguments[:-1], "24"]) == 2  # other settings: refused in one line
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["demo-data", str(other), "--format", "dicom"]) == 2  # a folder of other files is refused
    assert (other / "notes.txt").read_text() == "mine"
