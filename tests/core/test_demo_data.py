"""``ctframe demo-data --format``: formats come from plugins through ``ctframe_demo_data``."""

from __future__ import annotations

import sys

import pytest

from ctframe.commands.main import main
from ctframe.registry.plugins import PLUGINS_ENV
from tests.conftest import install_distribution

OFFERS = """
from pathlib import Path
from ctframe import hookimpl


def write_notes(folder, count=None, size=None, seed=0):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count or 2):
        (folder / f"note{index}.txt").write_text(f"{size} {seed}")
    return f"{count or 2} notes in {folder}"


@hookimpl
def ctframe_demo_data(register):
    register("notes", write_notes, "text notes")
    register("shared", write_notes, "offered by two plugins")
"""

ALSO_SHARED = """
from ctframe import hookimpl


@hookimpl
def ctframe_demo_data(register):
    register("shared", lambda folder, **_: "", "the same name again")
"""

BROKEN = """
from ctframe import hookimpl


@hookimpl
def ctframe_demo_data(register):
    raise RuntimeError("broken on purpose")
"""


MODULES = (
    ("demo_notes_ctframe", OFFERS, "notes"),
    ("demo_shared_ctframe", ALSO_SHARED, "shared"),
    ("demo_broken_ctframe", BROKEN, "broken"),
)
"""Module names of their own: another test's plugin module of the same name would be taken from
sys.modules instead of these (the suite shares one process per worker)."""


@pytest.fixture
def offering_plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    for module, source, entry in MODULES:
        path = tmp_path / f"{module}.py"
        path.write_text(source)
        install_distribution(site, path, module, entry)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(PLUGINS_ENV, "notes,shared,broken")
    yield
    for module, _, _ in MODULES:
        sys.modules.pop(module, None)


def test_a_format_writes_through_its_plugin(offering_plugins, tmp_path, capsys):
    folder = tmp_path / "out"
    assert (
        main(["demo-data", str(folder), "--format", "notes", "--count", "3", "--size", "7", "--seed", "5"])
        == 0
    )
    written = sorted(p.name for p in folder.iterdir())
    assert written == [".ctframe-demo-data.json", "note0.txt", "note1.txt", "note2.txt"]
    assert (folder / "note0.txt").read_text() == "7 5"
    again = ["demo-data", str(folder), "--format", "notes", "--count", "3", "--size", "7", "--seed", "5"]
    assert main(again) == 0  # demo-data's own folder may be written again without --force
    assert "3 notes in" in capsys.readouterr().out


def test_unknown_and_clashing_formats_are_refused_in_one_line(offering_plugins, tmp_path, capsys):
    for name in ("nope", "shared"):  # "shared" is offered twice: it goes to neither plugin
        assert main(["demo-data", str(tmp_path / name), "--format", name]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and f"no demo data format '{name}'" in error
        assert "choose one of: notes (" in error  # the broken plugin costs only its own formats
        assert "'shared' is offered by notes and shared" in error and "broken on purpose" in error
        assert not (tmp_path / name).exists()


def test_count_and_size_must_be_positive(offering_plugins, tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "x"), "--format", "notes", "--count", "0"]) == 2
    assert "--count and --size must be positive" in capsys.readouterr().err
