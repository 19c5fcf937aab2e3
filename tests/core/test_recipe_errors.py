"""Every recipe error is one line naming the file, section and key, with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctframe.commands.main import main


def _validate(recipe: Path, *extra: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stderr

    from rich.console import Console

    from ctframe.commands import shared

    buffer = io.StringIO()
    original = shared.err
    shared.err = Console(file=buffer, width=10_000, highlight=False)
    try:
        with redirect_stderr(buffer):
            code = main(["validate", str(recipe), *extra])
    finally:
        shared.err = original
    return code, buffer.getvalue()


def _edit(recipe: Path, old: str, new: str) -> Path:
    text = recipe.read_text()
    assert old in text
    recipe.write_text(text.replace(old, new))
    return recipe


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("epochs = 20", "epochz = 20", "[trainer] epochz: unknown key; did you mean 'epochs'?"),
        ("epochs = 20", 'epochs = "three"', "[trainer] epochs: Input should be a valid integer"),
        ("epochs = 20", "epochs = 0", "[trainer] epochs: Input should be greater than or equal to 1, got 0"),
        ("seed = 7", "seed = -1", "[run] seed: Input should be greater than or equal to 0"),
        (
            'component = "toy_trainer"',
            'component = "toy_trainr"',
            "[trainer] component: unknown trainer component 'toy_trainr'; did you mean 'toy_trainer'?; "
            "available: toy_trainer",
        ),
        ('component = "toy_head"\n', "", "[head] component: missing; name one of: toy_head"),
        ('device = "cpu"', 'device = "gpu"', "[run] device: String should match pattern"),
        ("[run]", "[rn]", "unknown top-level key 'rn'; did you mean 'run'?"),
        ('metrics = ["toy_accuracy"]', "metrics = []", "metrics: expected a non-empty list"),
        (
            "samples = 32",
            "samples = 32\nsamples = 33",
            "malformed TOML: Cannot overwrite a value (at line 10, column 13)",
        ),
        ("epochs = 20", "epochs = ", "malformed TOML: Invalid value (at line 20, column 10)"),
    ],
)
def test_recipe_errors(toy_site, toy_recipe, old, new, expected):
    code, output = _validate(_edit(toy_recipe, old, new))
    assert code == 2
    line = _one_line_error(output)
    assert str(toy_recipe) in line
    assert expected in line


def test_missing_required_value(toy_site, toy_recipe):
    import types

    from pydantic import Field

    from ctframe import Options, hookimpl
    from ctframe.base.errors import RecipeError
    from ctframe.registry.plugins import build_registry
    from ctframe.registry.recipe import load_recipe

    class Strict(Options):
        width: int = Field(description="feature width in pixels")

    module = types.ModuleType("strict_plugin")

    @hookimpl
    def ctframe_register_backbones(register):
        register("strict_backbone", lambda options, context: None, Strict, "needs a width")

    module.ctframe_register_backbones = ctframe_register_backbones
    registry = build_registry(extra=[module])
    with pytest.raises(RecipeError) as caught:
        load_recipe(
            toy_recipe, ["backbone.component=strict_backbone", "backbone.channels=1"], registry=registry
        )
    assert str(caught.value).endswith(
        "width: missing required value (feature width in pixels) (and 1 more problem)"
    )
    toy_recipe.write_text(toy_recipe.read_text().replace("channels = 4", ""))
    with pytest.raises(RecipeError) as caught:
        load_recipe(toy_recipe, ["backbone.component=strict_backbone"], registry=registry)
    assert (
        str(caught.value)
        == f"{toy_recipe}: [backbone] width: missing required value (feature width in pixels)"
    )


def test_missing_recipe_file(toy_site, tmp_path):
    code, output = _validate(tmp_path / "nope.toml")
    assert code == 2
    assert (
        _one_line_error(output) == f"error: {tmp_path / 'nope.toml'}: recipe file not found (check the path)"
    )


def test_override_is_typed_by_the_schema(toy_site, toy_recipe):
    from ctframe.registry.recipe import load_recipe

    recipe = load_recipe(
        toy_recipe,
        [
            "trainer.epochs=5",
            "trainer.lr=1e-3",
            "run.name=2024",
            "dataset.classes=['a','b']",
            "dataset.positive_class=a",
        ],
    )
    assert recipe.trainer.options.epochs == 5 and recipe.trainer.options.lr == pytest.approx(1e-3)
    assert recipe.run.name == "2024"
    assert recipe.dataset.options.classes == ["a", "b"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.epochs", "--set expects section.key=value, got 'trainer.epochs'"),
        ("trainr.epochs=3", "--set 'trainr.epochs=3': unknown section 'trainr'; did you mean 'trainer'?"),
        ("trainer.epochs=many", "[trainer] epochs: Input should be a valid integer"),
    ],
)
def test_override_errors(toy_site, toy_recipe, override, expected):
    code, output = _validate(toy_recipe, "--set", override)
    assert code == 2
    assert expected in _one_line_error(output)


def test_relative_paths_resolve_against_the_recipe_folder(toy_site, toy_recipe, monkeypatch, tmp_path):
    from pydantic import Field

    from ctframe import RecipePath
    from ctframe.registry.validation import validate_options

    class WithPath(__import__("ctframe").Options):
        root: RecipePath = Field(description="data folder")

    monkeypatch.chdir(tmp_path)
    options = validate_options(WithPath, {"root": "../data/x"}, toy_recipe, "dataset")
    assert options.root == toy_recipe.parent.parent / "data" / "x"
    absolute = validate_options(WithPath, {"root": "/srv/data"}, toy_recipe, "dataset")
    assert absolute.root == Path("/srv/data")
