"""Bad images are per-file problems everywhere (issue 26, item 4).

``ctframe predict``, ``evaluate`` and ``explain`` on folders that hold one damaged or hostile entry
beside good images. With ``--on-bad-image error`` each stops with exit code 2 and one ``error:`` line
naming the file, whether the damage shows when the file is read (a bad checksum) or only when it is
decoded in a loader worker (garbage pixel data under valid checksums); with ``skip`` each leaves the
file out, lists it on stderr and answers for the rest. FIFOs, sockets and device links are never opened
(a FIFO would block: every case runs under a timeout). Files that existed before are never changed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ctframe_ct_volumes.discover import NOT_REGULAR, discover
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV
from ctframe_ct_volumes.reader import build_reader
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe import BuildContext, DataError
from ctframe.registry.plugins import PLUGINS_ENV, clear_registry_cache
from tests.conftest import TESTS
from tests.core.hostile_support import install_toy, invoke, refused, tree
from tests.toy.recipe import toy_recipe_text

_spec = importlib.util.spec_from_file_location(
    "hardening_images_support", TESTS / "plugins/folder_split/support.py"
)
assert _spec is not None and _spec.loader is not None
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

pytestmark = pytest.mark.timeout(120)  # a FIFO that is opened blocks: fail, never hang the suite

PLUGINS = "toy,folder_split,two_phase,dense_head,gradcam"
RECIPE = toy_recipe_text(
    {"dataset": {"samples": 16}, "evaluation": {"bootstrap": 0}},
    head={"component": "dense", "units": 8},
    trainer={
        "component": "two_phase",
        "batch_size": 8,
        "progress": False,
        "tensorboard": False,
        "initial": {"epochs": 1},
        "finetuned": {"epochs": 1, "unfreeze_last": 2},
    },
    dataset={
        "component": "folder_split",
        "root": "data",
        "classes": ["COVID", "non-COVID"],
        "positive_class": "COVID",
        "image_size": 16,
        "num_workers": 0,
        "leakage_check": False,
    },
)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A completed run of the toy backbone on tiny folder_split images (its models read PNGs)."""
    root = tmp_path_factory.mktemp("hardening-images")
    install_toy(root / "site")
    support.make_folder(root / "data", per_class=6)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "site"))
        patch.setenv(PLUGINS_ENV, PLUGINS)
        patch.chdir(root)
        clear_registry_cache()
        (root / "recipe.toml").write_text(RECIPE)
        code, _, err = invoke(["run", "recipe.toml", "--output", "runs"])
        assert code == 0, err
        clear_registry_cache()
    (run,) = (root / "runs").iterdir()
    return run


# ------------------------------------------------------------------ damaged and hostile entries


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_pixels(raw: bytes, size: int = 16) -> bytes:
    """A PNG whose header says ``size`` x ``size`` RGB and whose IDAT holds ``raw`` (zlib-compressed),
    every chunk with a valid checksum: only decoding can tell that the pixel data is wrong."""
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def _write(name: str, content: bytes) -> Callable[[Path], str]:
    def damage(folder: Path) -> str:
        (folder / name).write_bytes(content)
        return name

    return damage


def _truncated(folder: Path) -> str:
    (folder / "cut.png").write_bytes(support.image_bytes(7)[:60])
    return "cut.png"


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "x.png")
    return "x.png"


def _socket(folder: Path) -> str:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.path.relpath(folder / "sock.png"))  # relative: socket paths are limited to ~100 bytes
    server.close()  # the socket file stays
    return "sock.png"


def _link_to_dev_zero(folder: Path) -> str:
    os.symlink("/dev/zero", folder / "zero.png")
    return "zero.png"


def _link_to_fifo(folder: Path) -> str:
    os.mkfifo(folder.parent / "pipe")
    os.symlink(folder.parent / "pipe", folder / "piped.png")
    return "piped.png"


def _folder_named_png(folder: Path) -> str:
    (folder / "x.png").mkdir()
    return "x.png"


ROW = 16 * 3 + 1  # one scanline of a 16 px RGB image with its filter byte
DAMAGES: dict[str, tuple[Callable[[Path], str], str | None]] = {
    # id: (damage, what the reason says); None: not a bad image, nothing is skipped
    "idat-too-short": (_write("short.png", png_with_pixels(zlib.compress(b"\0" * 20))), "corrupt"),
    "idat-not-zlib": (_write("junk.png", png_with_pixels(b"not a zlib stream at all")), "corrupt"),
    "idat-bad-filter": (_write("filter.png", png_with_pixels(zlib.compress(b"\x09" * ROW * 16))), "corrupt"),
    "truncated": (_truncated, "truncated"),
    "zero-bytes": (_write("empty.png", b""), "empty"),
    "text-named-png": (_write("notes.png", b"hello, I am text\n" * 4), "not an image"),
    "decompression-bomb": (_write("bomb.png", support.bomb_png()), "decompression bomb"),
    "fifo": (_fifo, "not a regular file"),
    "socket": (_socket, "not a regular file"),
    "link-to-dev-zero": (_link_to_dev_zero, "not a regular file"),
    "link-to-fifo": (_link_to_fifo, "not a regular file"),
    "folder-named-png": (_folder_named_png, None),
}


# ------------------------------------------------------------------ the commands


@dataclass(frozen=True)
class World:
    root: Path
    run: Path
    images: Path
    """Two good PNGs (predict, explain)."""
    labelled: Path
    """COVID/ and non-COVID/ with two good PNGs each (evaluate); damage goes into COVID/."""


def _world(root: Path, base_run: Path) -> World:
    run = root / "run"
    shutil.copytree(base_run, run)
    images = root / "images"
    images.mkdir()
    for name, seed in (("a.png", 1), ("b.png", 2)):
        (images / name).write_bytes(support.image_bytes(seed))
    labelled = support.make_folder(root / "labelled", per_class=2)
    return World(root, run, images, labelled)


COMMANDS: dict[str, Callable[[World, str], list[str]]] = {
    "predict": lambda w, mode: [
        "predict",
        str(w.run),
        str(w.images),
        "-o",
        str(w.root / "out.csv"),
        "--on-bad-image",
        mode,
    ],
    "evaluate": lambda w, mode: ["evaluate", str(w.run), "--data", str(w.labelled), "--on-bad-image", mode],
    "explain": lambda w, mode: [
        "explain",
        str(w.run),
        str(w.images),
        "-o",
        str(w.root / "cams"),
        "--on-bad-image",
        mode,
    ],
}


def _target(world: World, command: str) -> Path:
    return world.labelled / "COVID" if command == "evaluate" else world.images


def _answered(world: World, command: str) -> str:
    """The text of what the command wrote: the rows it answered for."""
    if command == "predict":
        return (world.root / "out.csv").read_text()
    if command == "explain":
        return (world.root / "cams" / "explanations.csv").read_text()
    (folder,) = (world.run / "external").iterdir()
    return (folder / "predictions_finetuned.csv").read_text()


def _rows(text: str) -> int:
    return len(list(csv.DictReader(text.splitlines())))


@dataclass(frozen=True)
class Case:
    damage: str
    command: str
    mode: str

    @property
    def id(self) -> str:
        return f"{self.command}-{self.mode}-{self.damage}"


EVERYWHERE = ("idat-too-short", "idat-not-zlib", "truncated", "fifo", "link-to-dev-zero", "folder-named-png")
CASES = [Case(damage, "predict", mode) for damage in DAMAGES for mode in ("error", "skip")] + [
    Case(damage, command, mode)
    for command in ("evaluate", "explain")
    for damage in EVERYWHERE
    for mode in ("error", "skip")
]


def test_the_table_covers_every_damage_and_command():
    assert len(CASES) >= 14 and len({case.id for case in CASES}) == len(CASES)
    assert {case.command for case in CASES} == set(COMMANDS)
    assert {case.damage for case in CASES} == set(DAMAGES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_a_bad_image_is_one_file_problem(case: Case, base_run, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    monkeypatch.syspath_prepend(str(base_run.parents[1] / "site"))
    monkeypatch.chdir(tmp_path)
    world = _world(tmp_path, base_run)
    damage, reason = DAMAGES[case.damage]
    culprit = damage(_target(world, case.command))
    before = tree(tmp_path)

    code, out, err = invoke(COMMANDS[case.command](world, case.mode))

    assert "Traceback" not in out + err and "DataLoader worker" not in out + err, out + err
    after = tree(tmp_path)
    rewritten = {str(world.run / "report.html")} if case.command == "evaluate" else set()  # lists it
    kept = {path: after.get(path) for path in before if path not in rewritten}
    assert kept == {path: before[path] for path in kept}, "a file that existed before changed"
    if reason is None:  # not a bad image: the command answers for the good ones and skips nothing
        assert code == 0, err
        assert "error:" not in err and "skipped" not in err, err
        return
    if case.mode == "error":
        line = refused(code, out, err, [culprit, reason])
        assert "--on-bad-image skip" in line
        assert after == before, "a refused command wrote files"
        return
    assert code == 0, err
    assert "error:" not in err, err
    # evaluate logs its skipped files as warnings (stderr on the console; pytest captures the log)
    lines = [r.getMessage() for r in caplog.records] if case.command == "evaluate" else err.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == 1 and culprit in skipped[0] and reason in skipped[0], err
    answered = _answered(world, case.command)
    assert culprit not in answered
    assert _rows(answered) == (4 if case.command == "evaluate" else 2)
    if case.command == "predict":
        assert "2 images, 1 skipped" in out, out
    if case.command == "evaluate":
        (folder,) = (world.run / "external").iterdir()
        recorded = json.loads((folder / "source.json").read_text())
        assert [Path(file).name for file, _ in recorded["skipped"]] == [culprit]
        assert sum(recorded["class_counts"].values()) == 4


def test_a_fifo_given_by_name_is_refused_without_being_opened(base_run, tmp_path, monkeypatch):
    """Named on the command line, not found by walking a folder: the same one line, no wait."""
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    monkeypatch.syspath_prepend(str(base_run.parents[1] / "site"))
    monkeypatch.chdir(tmp_path)
    world = _world(tmp_path, base_run)
    culprit = _fifo(world.images)
    argv = ["predict", str(world.run), str(world.images / culprit), str(world.images / "a.png")]
    code, out, err = invoke([*argv, "-o", str(tmp_path / "out.csv")])
    refused(code, out, err, [culprit, "not a regular file"])
    code, out, err = invoke([*argv, "-o", str(tmp_path / "out.csv"), "--on-bad-image", "skip"])
    assert code == 0 and err.startswith(f"skipped {world.images / culprit}: not a regular file"), err
    assert _rows((tmp_path / "out.csv").read_text()) == 1


def test_ct_volumes_never_opens_fifos_or_devices(tmp_path, monkeypatch):
    """Discovery counts them as skipped; the reader refuses them by name, or lists them with skip."""
    monkeypatch.setenv(KEY_ENV, "0123456789abcdef" * 4)
    root = tmp_path / "set"
    write_synthetic_set(root, patients=2, slices=3, size=(16, 16))
    case = sorted(path for path in root.iterdir() if path.is_dir())[0]
    os.mkfifo(case / "pipe.dcm")
    os.symlink("/dev/zero", case / "zero.nii")
    found = discover(root)
    assert found.skipped[NOT_REGULAR] == 2 and found.series
    options = CtVolumesOptions(
        root=root,
        labels=root / "labels.csv",
        classes=["normal", "nodule"],
        positive_class="nodule",
        image_size=16,
    )
    context = BuildContext(seed=0, device="cpu", recipe_dir=tmp_path)
    reader = build_reader(options, context)
    with pytest.raises(DataError, match=f"{case.name}: a file inside: {NOT_REGULAR}"):
        reader.read([case])
    read = reader.read([case], on_bad_image="skip")
    assert len(read.images) == 3 and read.skipped == [(str(case), f"a file inside: {NOT_REGULAR}")] * 2
    for name in ("pipe.dcm", "zero.nii"):
        with pytest.raises(DataError, match=f"{name}: {NOT_REGULAR}"):
            reader.read([case / name])
        assert reader.read([case / name], on_bad_image="skip").skipped == [(str(case / name), NOT_REGULAR)]


def test_files_the_model_does_not_read_are_counted(base_run, tmp_path, monkeypatch):
    """issue 25: .dcm and .txt files beside images are left out with a count, and a folder of only DICOM
    says what it holds instead of "no image files" alone."""
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    monkeypatch.syspath_prepend(str(base_run.parents[1] / "site"))
    monkeypatch.chdir(tmp_path)
    world = _world(tmp_path, base_run)
    for name in ("IM0001.dcm", "IM0002.dcm", "notes.txt"):
        (world.images / name).write_bytes(b"\0" * 200)
    code, out, err = invoke(["predict", str(world.run), str(world.images), "-o", str(tmp_path / "a.csv")])
    assert code == 0, err
    assert "left out 3 file(s) this model does not read (.dcm 2, .txt 1): DICOM is read by models" in err
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    (dicom / "IM0001.dcm").write_bytes(b"\0" * 200)
    code, out, err = invoke(["predict", str(world.run), str(dicom), "-o", str(tmp_path / "b.csv")])
    refused(code, out, err, ["no image files to predict on; left out 1 file(s)", ".dcm 1", "ct_volumes"])
