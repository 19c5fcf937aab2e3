"""``ctframe import-keras MODEL --recipe RECIPE --output classifier.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def add_commands(cli: typer.Typer) -> None:
    @cli.command("import-keras")
    def import_keras(
        model: Annotated[Path, typer.Argument(help="whole Keras model: legacy .h5 (model.save) or .keras")],
        recipe: Annotated[Path, typer.Option("--recipe", "-r", help="recipe naming the backbone and head")],
        output: Annotated[Path, typer.Option("--output", "-o", help=".safetensors to write")],
        classes: Annotated[
            Optional[str],  # noqa: UP045 - typer needs Optional here
            typer.Option(help="class names in the Keras model's label order, comma-separated "
                         "(default: the recipe's dataset classes)"),
        ] = None,
        overrides: Annotated[
            Optional[list[str]],  # noqa: UP045 - typer needs Optional here
            typer.Option("--set", "-s", help="override a recipe value: section.key=value (repeatable)"),
        ] = None,
    ) -> None:
        """Import a Keras classifier (ResNetV2 base + dense head) as whole-classifier weights."""
        from ctframe.api.recipes import load_recipe

        from .keras_import import import_keras_classifier

        names = [name.strip() for name in classes.split(",")] if classes else None
        summary = import_keras_classifier(model, load_recipe(recipe, overrides or ()), output, names)
        if summary.unused:
            typer.echo(
                f"warning: {model}: {len(summary.unused)} layer(s) with weights not loaded: "
                + ", ".join(summary.unused),
                err=True,
            )
        typer.echo(
            f"imported {model}: {summary.backbone_layers} backbone layers, head layers "
            f"{', '.join(summary.head_layers)}; classes {', '.join(summary.class_names)} (label order) "
            f"-> {summary.output}; start from it with [run] weights = \"{summary.output}\""
        )
