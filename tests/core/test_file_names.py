"""File names of any bytes: the escaping in ctframe.base.filenames, and folder_split end to end with names
that hold invalid UTF-8, NFD accents, spaces, brackets, backslashes and control characters."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import unicodedata
from pathlib import Path

import pytest

from ctframe import DataError
from ctframe.base.filenames import ensure_escaped, escape_name, escape_path, needs_escaping, unescape_name
from ctframe.commands.main import main
from tests.conftest import TESTS

# The folder_split test helpers, loaded by path (tests use importlib mode, so they are no package).
_spec = importlib.util.spec_from_file_location(
    "file_names_support", TESTS / "plugins" / "folder_split" / "support.py"
)
assert _spec is not None and _spec.loader is not None
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)
context, image_bytes, make_folder, options = (
    support.context,
    support.image_bytes,
    support.make_folder,
    support.options,
)

# ------------------------------------------------------------------ the escaping


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("Covid (1).png", "Covid (1).png"),  # ordinary names are their own escaped form
        ("[scan] ü 1.png", "[scan] ü 1.png"),
        ("e\u0301.png", "e\u0301.png"),  # NFD is kept: normalising is the caller's choice
        (os.fsdecode(b"bad\xff\xfe.png"), "bad\\xff\\xfe.png"),
        (os.fsdecode(b"\xc3(.png"), "\\xc3(.png"),  # a truncated two-byte sequence
        ("a\\b.png", "a\\\\b.png"),
        ("a\\xff.png", "a\\\\xff.png"),  # looks like an escape, is not one
        ("tab\there\n.png", "tab\\x09here\\x0a.png"),
        ("\x7f\x85\u2028\u2029", "\\x7f\\u0085\\u2028\\u2029"),
        ("\ud800", "\\ud800"),  # a lone surrogate that surrogateescape does not produce
    ],
)
def test_escape_examples_and_round_trip(name, escaped):
    assert escape_name(name) == escaped
    assert unescape_name(escaped) == name
    escaped.encode("utf-8")  # always writable as UTF-8
    assert escaped.isprintable()
    assert not needs_escaping(escaped)


def test_round_trip_of_random_names():
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x00, 0x180)] + ["\\", "x", "u", "\u2028", "\ud800", "\U0001f600"]
    for _ in range(3000):
        raw = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(0, 12)))
        for name in (os.fsdecode(raw), "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))):
            text = escape_name(name)
            assert unescape_name(text) == name
            text.encode("utf-8")
            assert not needs_escaping(text)


def test_real_bytes_come_back():
    raw = b"COVID/scan \xff\xfe (1).png"
    assert os.fsencode(unescape_name(escape_path(raw))) == raw
    assert escape_path(Path(os.fsdecode(raw))) == "COVID/scan \\xff\\xfe (1).png"


@pytest.mark.parametrize("text", ["a\\", "a\\q", "\\x4", "\\u12", "\\X41"])
def test_unescape_refuses_stray_backslashes(text):
    with pytest.raises(ValueError, match="starts no"):
        unescape_name(text)


def test_unescape_accepts_non_canonical_hex():
    assert unescape_name("\\x41\\xFF\\u00e9") == "A" + os.fsdecode(b"\xff") + "é"


def test_needs_escaping_tells_raw_from_escaped():
    assert needs_escaping(os.fsdecode(b"\xff")) and needs_escaping("a\nb")
    assert not needs_escaping("a\\b") and not needs_escaping("é (1)")


def test_ensure_escaped_never_escapes_twice():
    raw = os.fsdecode(b"scan \xff\\1.png")
    assert ensure_escaped(raw) == escape_name(raw) == "scan \\xff\\\\1.png"
    assert ensure_escaped(ensure_escaped(raw)) == escape_name(raw)
    assert ensure_escaped("Covid (1).png") == "Covid (1).png"


# ------------------------------------------------------------------ folder_split with such names

NAMES = [
    b"bad \xff\xfe name.png",
    b"\xc3( truncated.png",
    "NFD e\u0301cho.png".encode(),
    b"Covid (1) [a].png",
    b"back\\slash.png",
    b"line\nbreak.png",
    b"tab\tstop.png",
    b"plain.png",
]


def weird_folder(root: Path, per_class: int = len(NAMES)) -> dict[str, bytes]:
    """Both class folders named with NAMES; returns sample id -> real path bytes."""
    make_folder(root, per_class=0)
    ids = {}
    for class_index, class_name in enumerate(("COVID", "non-COVID")):
        for k, name in enumerate(NAMES[:per_class]):
            path = os.fsencode(root / class_name) + b"/" + name
            with open(path, "wb") as handle:
                handle.write(image_bytes(500 * class_index + k))
            relative = os.fsdecode(class_name.encode() + b"/" + name)
            ids[escape_name(unicodedata.normalize("NFC", relative))] = path
    return ids


def _build(root: Path, run: Path | None = None, **overrides):
    from ctframe_folder_split.factory import build_folder_split

    return build_folder_split(options(root, **overrides), context(run))


def test_sample_ids_are_escaped_nfc_and_map_to_the_real_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    ids = weird_folder(tmp_path / "data")
    data = _build(tmp_path / "data", tmp_path / "run", leakage_check=True)
    used = {sid for split in (data.train, data.val, data.test) for sid in split.sample_ids}
    assert used == set(ids)
    assert "COVID/bad \\xff\\xfe name.png" in used and "COVID/NFD \u00e9cho.png" in used
    for sid in used:
        assert not needs_escaping(sid)
        assert os.fsencode(unescape_name(data.files[sid])) == ids[sid]  # the real file, NFD included
    text = (tmp_path / "run" / "split_manifest.csv").read_text(encoding="utf-8")  # strict UTF-8
    with open(tmp_path / "run" / "split_manifest.csv", newline="", encoding="utf-8") as handle:
        assert {row["file"] for row in csv.DictReader(handle)} == set(ids)
    assert len(text.splitlines()) == len(ids) + 1  # one line per file, newlines in names included
    json.dumps(dict(data.summary), ensure_ascii=False).encode("utf-8")

    again = _build(tmp_path / "data", tmp_path / "run")  # a resume reads the manifest back
    assert again.summary["reused_recorded_split"] is True
    for split in ("train", "val", "test"):
        assert getattr(again, split).sample_ids == getattr(data, split).sample_ids


def test_bad_files_with_odd_names_are_named_escaped_in_both_modes(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    weird_folder(tmp_path / "data")
    with open(os.fsencode(tmp_path / "data" / "COVID") + b"/broken \xff.png", "wb") as handle:
        handle.write(b"not an image")
    from ctframe_folder_split.factory import check

    with pytest.raises(DataError, match=r"COVID/broken \\xff\.png \(not an image") as error:
        check(options(tmp_path / "data"), context())
    assert "\n" not in str(error.value)
    data = _build(tmp_path / "data", tmp_path / "run", on_bad_image="skip")
    assert data.summary["skipped"][0]["file"] == "COVID/broken \\xff.png"
    manifest = (tmp_path / "run" / "split_manifest.csv").read_text(encoding="utf-8")
    assert "COVID/broken \\xff.png" in manifest


def test_names_differing_only_in_normalisation_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    make_folder(tmp_path, per_class=4)
    (tmp_path / "COVID" / "\u00e9.png").write_bytes(image_bytes(90))
    (tmp_path / "COVID" / "e\u0301.png").write_bytes(image_bytes(91))

    with pytest.raises(DataError, match=r"1 file name\(s\) occur twice .*COVID/\u00e9\.png; rename"):
        _build(tmp_path)


def test_materialize_keeps_the_real_names(tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    ids = weird_folder(tmp_path / "data")
    data = _build(tmp_path / "data", materialize="copy", materialize_dir=tmp_path / "split")
    assert data.summary["materialized"]["copied"] == len(ids)
    laid_out = {
        os.fsencode(path.relative_to(tmp_path / "split"))
        for path in (tmp_path / "split").rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }
    real = {os.fsencode(Path(os.fsdecode(p)).relative_to(tmp_path / "data")) for p in ids.values()}
    assert {name.split(b"/", 1)[1] for name in laid_out} == real


def test_a_manifest_with_a_stray_backslash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    from ctframe_folder_split.manifest import read_manifest

    manifest = tmp_path / "split_manifest.csv"
    manifest.write_text("file,sha256,class,split,group,status\nCOVID/a\\q.png,00,COVID,train,g,ok\n")
    with pytest.raises(DataError, match="not an escaped file name"):
        read_manifest(manifest)
    manifest.write_text("file,sha256,class,split,group,status\nCOVID/a.png,00,COVID\n")
    with pytest.raises(DataError, match="line 2 has fewer than 6 columns"):
        read_manifest(manifest)


# ------------------------------------------------------------------ end to end through `ctframe run`

PLUGINS = "folder_split,torchvision,dense_head,two_phase,classification_metrics"

RECIPE = """
metrics = ["accuracy", "roc_auc"]

[run]
seed = 3
device = "cpu"

[dataset]
component = "folder_split"
root = "data"
classes = ["COVID", "non-COVID"]
positive_class = "COVID"
image_size = 16
num_workers = 1
on_bad_image = "{mode}"

[backbone]
component = "torchvision"
arch = "resnet18"
weights = "none"

[head]
component = "dense"
units = 8

[trainer]
component = "two_phase"
batch_size = 4

[trainer.initial]
epochs = 1

[trainer.finetuned]
epochs = 1
unfreeze_last = 2

[evaluation]
bootstrap = 0
"""


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def _text_files(run_dir: Path) -> list[Path]:
    suffixes = {".csv", ".json", ".log", ".toml", ".html"}
    return [path for path in run_dir.rglob("*") if path.is_file() and path.suffix in suffixes]


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_run_and_resume_with_names_of_any_bytes(tiny_run, monkeypatch, capsys, mode):
    from ctframe_two_phase.trainer import TwoPhaseTrainer

    ids = weird_folder(tiny_run / "data")
    if mode == "skip":
        with open(os.fsencode(tiny_run / "data" / "non-COVID") + b"/empty \xff.png", "wb"):
            pass
    recipe = tiny_run / "weird.toml"
    recipe.write_text(RECIPE.format(mode=mode))
    runs = tiny_run / "runs"

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # stop after the manifest is written, as Ctrl-C would
        patch.setattr(TwoPhaseTrainer, "fit", interrupted)
        assert main(["run", str(recipe), "--output", str(runs)]) == 130
    (run_dir,) = runs.iterdir()
    manifest = (run_dir / "split_manifest.csv").read_bytes()
    assert main(["run", "--resume", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err

    assert (run_dir / "split_manifest.csv").read_bytes() == manifest  # the recorded split, reused
    summary = json.loads((run_dir / "split_summary.json").read_text(encoding="utf-8"))
    assert summary["reused_recorded_split"] is True
    assert sum(summary["sizes"].values()) == len(ids)
    if mode == "skip":
        assert [item["file"] for item in summary["skipped"]] == ["non-COVID/empty \\xff.png"]
    with open(run_dir / "split_manifest.csv", newline="", encoding="utf-8") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    assert {f for f, row in rows.items() if row["status"] == "ok"} == set(ids)
    for path in _text_files(run_dir):  # every artifact is strict UTF-8: no surrogate got through
        path.read_text(encoding="utf-8")
    test_ids = {f for f, row in rows.items() if row["split"] == "test"}
    predictions = "".join(p.read_text(encoding="utf-8") for p in run_dir.glob("predictions_*.csv"))
    assert test_ids and all(sid in predictions for sid in test_ids)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"


def test_validate_and_run_refuse_a_bad_image_before_any_run_directory(tiny_run, capsys):
    weird_folder(tiny_run / "data")
    (tiny_run / "data" / "COVID" / "cut.png").write_bytes(image_bytes(7, size=(64, 64))[:200])
    recipe = tiny_run / "weird.toml"
    recipe.write_text(RECIPE.format(mode="error"))
    for command in (
        ["validate", "--quick", str(recipe)],
        ["run", str(recipe), "--output", str(tiny_run / "runs")],
    ):
        assert main(command) == 2
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and "Traceback" not in error
        assert "1 unusable file(s)" in error and "COVID/cut.png (corrupt or truncated PNG" in error
    assert not (tiny_run / "runs").exists()
