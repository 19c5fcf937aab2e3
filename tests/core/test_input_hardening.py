"""Hostile inputs that used to be internal errors are one-line user errors (exit 2) that name the culprit."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from rich.console import Console

from ctframe import RecipeError
from ctframe.commands import shared
from ctframe.commands.main import main
from ctframe.registry.recipe import read_recipe_file
from ctframe.storage.files import write_text


def _cli(*args: str) -> tuple[int, str]:
    buffer = io.StringIO()
    original = shared.err
    shared.err = Console(file=buffer, width=10_000, highlight=False)
    try:
        with redirect_stderr(buffer):
            code = main(list(args))
    finally:
        shared.err = original
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in buffer.getvalue(), buffer.getvalue()
    return code, lines[0]


def test_a_path_under_an_unknown_users_home_is_a_recipe_error(toy_site, toy_recipe):
    code, line = _cli("validate", str(toy_recipe), "--set", "dataset.require_file=~nosuchuser-ctframe/x.csv")
    assert code == 2
    assert "[dataset] require_file:" in line and "~nosuchuser-ctframe names no known user's home" in line


@pytest.mark.parametrize("opening", ["[", "{a = "])
def test_toml_nested_50000_deep_is_a_recipe_error(tmp_path, opening):
    closing = "]" if opening == "[" else "}"
    recipe = tmp_path / "deep.toml"
    recipe.write_text("x = " + opening * 50_000 + ("" if opening == "[" else "1") + closing * 50_000 + "\n")
    with pytest.raises(RecipeError, match="deep.toml: malformed TOML: arrays or tables nested too deeply"):
        read_recipe_file(recipe)
    code, line = _cli("validate", str(recipe))
    assert code == 2 and line.startswith("error: ") and "nested too deeply" in line


def test_writing_onto_a_folder_names_the_folder_and_leaves_nothing(tmp_path):
    target = tmp_path / "schema-dir"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as error:
        write_text(target, "{}")
    assert error.value.filename == str(target)
    assert list(tmp_path.iterdir()) == [target] and not list(target.iterdir())


def test_schema_output_onto_a_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    code, line = _cli("schema", "--output", str(tmp_path))
    assert code == 2
    assert line == f"error: {tmp_path}: a folder; --output names the file to write"
    assert not [p for p in Path(tmp_path).iterdir() if p.name.endswith(".tmp")]
