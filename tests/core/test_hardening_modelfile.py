"""Edited, damaged and forged model files (issue 26, item 2): every reader refuses them in one line.

Each case copies a completed toy run (unsigned, or signed with a signing key), edits its model file, and
runs one reader of model files on it: ``predict``, ``evaluate``, ``export``, ``explain``, ``card`` and
``ctframe.load_model``. A refusal is exit code 2 (a :class:`CtframeError` for the Python function), one
``error:`` line naming the file and the field, no traceback, and every file as it was before. The
unedited files are accepted, with and without the key.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import ctframe
from ctframe.base.errors import CtframeError
from ctframe.registry.plugins import PLUGINS_ENV, clear_registry_cache
from ctframe.storage.files import sha256_file
from ctframe.storage.modelfile import reseal_model_file
from ctframe.storage.signing import KEY_ENV, KEY_FILE_ENV
from tests.core.hostile_support import invoke, refused, tree
from tests.core.test_group_predictions import files, run, toy  # noqa: F401  (fixtures)
from tests.toy.recipe import toy_recipe_text

KEY = "k" * 24 + "0123456789abcdef"
OTHER_KEY = "o" * 24 + "0123456789abcdef"
PLUGINS = "toy,export,gradcam"


@pytest.fixture(scope="module")
def signed(toy, tmp_path_factory) -> Path:  # noqa: F811
    """A second toy run (another seed, so other weights), written with the signing key set."""
    folder = tmp_path_factory.mktemp("signed-run")
    recipe = folder / "toy.toml"
    recipe.write_text(toy_recipe_text(run={"seed": 11}, trainer={"epochs": 2}, evaluation={"bootstrap": 0}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        code, _, err = invoke(["run", str(recipe), "--output", str(folder / "runs")])
    assert code == 0, err
    (path,) = (folder / "runs").iterdir()
    return path


@pytest.fixture(autouse=True)
def _plugins(monkeypatch, toy):  # noqa: F811
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    clear_registry_cache()
    yield
    clear_registry_cache()


# ------------------------------------------------------------------ edits of a copied run


def _edit(change: Callable[[dict], None], reseal: bool = False) -> Callable[[Path, Path], None]:
    """Change ``models/toy.json``'s fields; ``reseal``: then rewrite its digest as a careful editor
    without the key would (the weights' sha256 recomputed too)."""

    def edit(folder: Path, _: Path) -> None:
        model = folder / "models" / "toy.json"
        record = json.loads(model.read_text())
        change(record)
        model.write_text(json.dumps(record))
        if reseal:
            with pytest.MonkeyPatch.context() as patch:
                patch.delenv(KEY_ENV, raising=False)
                reseal_model_file(model)

    return edit


def _set(field: str, value) -> Callable[[dict], None]:
    return lambda record: record.__setitem__(field, value)


def _swap_weights(also_json: bool) -> Callable[[Path, Path], None]:
    """Put the other run's weights in place of this run's (``also_json``: and their sha256 in the json)."""

    def edit(folder: Path, other: Path) -> None:
        weights = folder / "models" / "toy.safetensors"
        shutil.copy(other / "models" / "toy.safetensors", weights)
        if also_json:
            _edit(lambda r: r["weights"].__setitem__("sha256", sha256_file(weights)))(folder, other)

    return edit


def _legacy(change: Callable[[dict], None]) -> Callable[[dict], None]:
    """A file as ctframe wrote it before the integrity block (format version 1), then ``change``d."""

    def edit(record: dict) -> None:
        record["format_version"] = 1
        del record["integrity"]
        change(record)

    return edit


def _as_recorded(edit: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    """``edit``, then the run's record updated to match, as if the run had written the file so."""

    def recorded(folder: Path, other: Path) -> None:
        edit(folder, other)
        ledger = json.loads((folder / "integrity.json").read_text())
        ledger["files"]["models/toy.json"]["sha256"] = sha256_file(folder / "models" / "toy.json")
        (folder / "integrity.json").write_text(json.dumps(ledger))

    return recorded


def _forge_ledger(folder: Path, _: Path) -> None:
    ledger = json.loads((folder / "integrity.json").read_text())
    ledger["files"]["models/toy.json"]["sha256"] = "0" * 64
    (folder / "integrity.json").write_text(json.dumps(ledger))


@dataclass(frozen=True)
class Case:
    name: str
    edit: Callable[[Path, Path], None]
    culprit: tuple[str, ...]
    base: str = "plain"
    """The run copied: ``plain`` (unsigned) or ``signed``."""
    key: str | None = None
    """The signing key set while the reader runs."""
    readers: tuple[str, ...] = ("predict", "evaluate", "export", "explain", "card", "load")


# evaluate reads images (runtime/inference.py's file_reader) before it rebuilds a model: for an older,
# unsealed file its message is still pydantic's, several lines; loading.check_reading is the one-line check
NO_SIZE_READERS = ("predict", "export", "explain", "load")
CASES = [
    Case("swapped-class-order", _edit(lambda r: r["class_names"].reverse()), ("class_names", "changed")),
    Case("threshold-0.99-weights-sha-recomputed", _edit(_set("threshold", 0.99)), ("threshold", "changed")),
    Case("threshold-text", _edit(_set("threshold", "abc")), ("threshold", "'abc'")),
    Case("threshold-nan", _edit(_set("threshold", float("nan"))), ("threshold", "nan")),
    Case("threshold-1.5", _edit(_set("threshold", 1.5)), ("threshold", "outside [0, 1]")),
    Case("positive-class-unknown", _edit(_set("positive_class", "grey")), ("positive_class", "'grey'")),
    Case(
        "image-size-0",
        _edit(lambda r: r["input"]["dataset"]["options"].__setitem__("size", 0)),
        ("field input changed",),
    ),
    Case(
        "image-size-0-older-file",
        _as_recorded(_edit(_legacy(lambda r: r["input"]["dataset"]["options"].__setitem__("size", 0)))),
        ("input.dataset.options.size",),
        readers=NO_SIZE_READERS,
    ),
    Case("input-shape-0", _edit(lambda r: r["input"].__setitem__("shape", [3, 0, 8])), ("input.shape",)),
    Case("missing-field", _edit(lambda r: r.pop("positive_class")), ("positive_class", "missing")),
    Case("unknown-field", _edit(_set("surprise", 1)), ("surprise",)),
    Case("classes-twice", _edit(_set("class_names", ["dark", "dark"])), ("class_names", "twice")),
    Case("weights-path", _edit(lambda r: r["weights"].__setitem__("file", "../x")), ("weights.file",)),
    Case("key-path", _edit(_set("key", "../../escape")), ("field key", "not a path")),
    Case(
        "calibration-negative",
        _edit(_set("calibration", {"method": "temperature", "temperature": -1})),
        ("calibration.temperature",),
    ),
    Case(
        "conformal-lacks-a-class",
        _edit(_set("conformal", {"alpha": 0.1, "method": "marginal", "quantiles": {"dark": 0.5}})),
        ("conformal.quantiles",),
    ),
    Case(
        "group-threshold-text",
        _edit(lambda r: r["group_rule"].__setitem__("threshold", "high")),
        ("group_rule.threshold",),
    ),
    Case("format-version-3", _edit(_set("format_version", 3)), ("format_version", "3")),
    Case("weights-swapped", _swap_weights(also_json=False), ("toy.safetensors", "sha256 differs")),
    Case("weights-and-sha-swapped", _swap_weights(also_json=True), ("field weights changed",)),
    Case("integrity-removed", _edit(lambda r: r.pop("integrity")), ("integrity", "removed")),
    Case(
        "digest-recomputed-in-the-run",
        _edit(_set("threshold", 0.99), reseal=True),
        ("integrity.json", "differs"),
    ),
    Case("run-record-forged", _forge_ledger, ("toy.json", "integrity.json")),
    Case(
        "signed-edited",
        _edit(_set("threshold", 0.99)),
        ("threshold", "signature mismatch"),
        base="signed",
        key=KEY,
    ),
    Case(
        "digest-recomputed-without-the-key",
        _edit(_set("threshold", 0.99), reseal=True),
        ("integrity", "unkeyed", KEY_ENV),
        base="signed",
        key=KEY,
    ),
    Case(
        "signature-removed",
        _edit(_legacy(lambda r: None)),
        ("integrity", "missing", KEY_ENV),
        base="signed",
        key=KEY,
    ),
    Case("wrong-key", lambda folder, other: None, ("integrity", "another key"), base="signed", key=OTHER_KEY),
    Case("unsigned-file-with-a-key", lambda folder, other: None, ("integrity", "unkeyed"), key=KEY),
    Case(
        "signed-run-record-edited",
        lambda folder, _: (folder / "integrity.json").write_text(
            (folder / "integrity.json").read_text().replace('"kind": "recipe"', '"kind": "other"')
        ),
        ("integrity.json", "signature mismatch"),
        base="signed",
        key=KEY,
    ),
]


def _argv(reader: str, folder: Path, images: Path, scratch: Path) -> list[str]:
    return {
        "predict": ["predict", str(folder), str(images), "-o", str(scratch / "p.csv")],
        "evaluate": ["evaluate", str(folder), "--data", str(images)],
        "export": ["export", str(folder), "--format", "onnx", "-o", str(scratch / "m.onnx")],
        "explain": ["explain", str(folder), str(images), "-o", str(scratch / "maps")],
        "card": ["card", str(folder)],
    }[reader]


def _load(folder: Path) -> tuple[int, str, str]:
    """``ctframe.load_model`` as a command would report it: exit code, no output, the error line."""
    try:
        ctframe.load_model(folder / "models" / "toy.json")
    except CtframeError as error:
        return error.exit_code, "", f"error: {error}\n"
    return 0, "", ""


@pytest.mark.parametrize(
    ("case", "reader"),
    [pytest.param(case, reader, id=f"{case.name}-{reader}") for case in CASES for reader in case.readers],
)
def test_an_edited_model_file_is_refused_in_one_line(case, reader, run, signed, files, tmp_path, monkeypatch):  # noqa: F811
    images, _ = files
    copy = tmp_path / "run"
    shutil.copytree(run if case.base == "plain" else signed, copy)
    case.edit(copy, signed if case.base == "plain" else run)
    if case.key:
        monkeypatch.setenv(KEY_ENV, case.key)
    scratch = tmp_path / "out"
    scratch.mkdir()
    before = tree(tmp_path)
    result = _load(copy) if reader == "load" else invoke(_argv(reader, copy, images, scratch))
    line = refused(*result, culprit=case.culprit)
    model = "toy.safetensors" if case.name == "weights-swapped" else "toy.json"
    assert model in line or "integrity.json" in line, line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("reader", ["predict", "evaluate", "card", "load"])
@pytest.mark.parametrize(("base", "key"), [("plain", None), ("signed", KEY)])
def test_an_unedited_model_file_is_accepted(base, key, reader, run, signed, files, tmp_path, monkeypatch):  # noqa: F811
    images, _ = files
    copy = tmp_path / "run"
    shutil.copytree(run if base == "plain" else signed, copy)
    if key:
        monkeypatch.setenv(KEY_ENV, key)
    (tmp_path / "out").mkdir()
    code, _, err = _load(copy) if reader == "load" else invoke(_argv(reader, copy, images, tmp_path / "out"))
    assert code == 0, err
    assert "error" not in err and "signed" not in err


def test_a_signed_model_read_without_the_key_is_accepted_with_one_warning(signed, files, tmp_path, caplog):  # noqa: F811
    images, _ = files
    copy = tmp_path / "run"
    shutil.copytree(signed, copy)
    with caplog.at_level(logging.WARNING, logger="ctframe"):
        code, _, err = invoke(["predict", str(copy), str(images), "-o", str(tmp_path / "p.csv")])
    assert code == 0, err
    said = [r.getMessage() for r in caplog.records if "signed" in r.getMessage()]
    assert said == [f"toy.json is signed; set {KEY_ENV} to verify it (not verified)"]


def test_the_key_file_signs_as_the_variable_does(signed, files, tmp_path, monkeypatch):  # noqa: F811
    images, _ = files
    (tmp_path / "key").write_text(KEY + "\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "key"))
    copy = tmp_path / "run"
    shutil.copytree(signed, copy)
    code, _, err = invoke(["predict", str(copy), str(images), "-o", str(tmp_path / "p.csv")])
    assert code == 0, err
    (tmp_path / "key").write_text("short")
    before = tree(tmp_path)
    refused(*invoke(["predict", str(copy), str(images), "-o", str(tmp_path / "q.csv")]), culprit=["key file"])
    assert tree(tmp_path) == before


def test_an_older_model_file_is_accepted_with_one_warning(run, files, tmp_path, caplog):  # noqa: F811
    images, _ = files
    models = tmp_path / "models-copy"  # away from the run: its record would tell the edit
    shutil.copytree(run / "models", models)
    record = json.loads((models / "toy.json").read_text())
    record["format_version"] = 1
    del record["integrity"]
    (models / "toy.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="ctframe"):
        code, _, err = invoke(
            ["predict", str(models / "toy.json"), str(images), "-o", str(tmp_path / "p.csv")]
        )
    assert code == 0, err
    said = [r.getMessage() for r in caplog.records if "integrity record" in r.getMessage()]
    assert said == [
        "toy.json has no integrity record (written by an older ctframe): its metadata is unchecked"
    ]


@pytest.mark.parametrize(
    ("base", "key", "culprit"),
    [("plain", KEY, "not signed"), ("signed", None, "is signed"), ("signed", OTHER_KEY, "another key")],
)
def test_resume_refuses_a_run_whose_signature_cannot_be_checked(
    base,
    key,
    culprit,
    run,  # noqa: F811
    signed,
    tmp_path,
    monkeypatch,
):
    copy = tmp_path / "run"
    shutil.copytree(run if base == "plain" else signed, copy)
    (copy / "status.json").write_text(json.dumps({"state": "interrupted"}))
    if key:
        monkeypatch.setenv(KEY_ENV, key)
    before = tree(tmp_path)
    refused(*invoke(["run", "--resume", str(copy)]), culprit=["integrity.json", culprit])
    assert tree(tmp_path) == before
