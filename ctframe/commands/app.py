"""The ``ctframe`` command line: thin wrappers over importable functions.

Errors are turned into one line and an exit code in :func:`main` only: 0 success, 2 user error
(bad recipe, data or arguments), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from ctframe.base.contracts import Kind
from ctframe.base.errors import CtframeError
from ctframe.base.version import __version__

DEBUG_ENV = "CTFRAME_DEBUG"

app = typer.Typer(
    name="ctframe",
    help="Plugin-based image classification: validated TOML recipes, reproducible run directories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", "-s", help="override a recipe value: section.key=value (repeatable)"),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"ctframe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """ctframe command line."""


@app.command()
def run(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe TOML file")] = None,  # noqa: UP045
    overrides: SetOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="folder for the run directory")  # noqa: UP045
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option("--resume", help="continue the interrupted run in this folder")  # noqa: UP045
    ] = None,
) -> None:
    """Validate RECIPE, then train and evaluate it inside a new run directory."""
    from ctframe.registry.recipe import load_recipe
    from ctframe.workflows.engine import resume_run, start_run

    if resume is not None:
        if recipe is not None or overrides or output is not None:
            raise CtframeError("--resume takes only the run directory; it reuses that run's recipe")
        result = resume_run(resume, console=err)
    elif recipe is None:
        raise CtframeError("name a recipe file (ctframe run RECIPE) or use --resume RUN_DIR")
    else:
        result = start_run(load_recipe(recipe, overrides or ()), output=output, console=err)
    from ctframe.runtime.distributed import is_main

    if is_main():  # under torchrun the other processes stay quiet
        out.print(f"run directory: {result.run_dir.path}")


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe TOML file")],
    overrides: SetOption = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="only the schema and the components' cheap checks")
    ] = False,
) -> None:
    """Check RECIPE without training: schema, components, device, data, model."""
    from ctframe.registry.recipe import load_recipe
    from ctframe.workflows.engine import check_recipe

    loaded = load_recipe(recipe, overrides or ())
    for line in check_recipe(loaded, quick=quick):
        out.print(f"  {line}")
    out.print(f"{recipe}: OK")


@app.command("list-plugins")
def list_plugins(
    kind: Annotated[Optional[Kind], typer.Option("--kind", help="only this kind")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show each component's options")] = False,
) -> None:
    """List installed components (and plugins that failed to load)."""
    from ctframe.registry.listing import describe_plugins
    from ctframe.registry.plugins import get_registry

    listing = describe_plugins(get_registry(), kind, verbose)
    if as_json:
        print(json.dumps(listing, indent=2, default=str))
        return
    table = Table("component", "kind", "plugin", "version", "description")
    for entry in listing["components"]:
        plugin = (
            entry["plugin"]
            if entry["package"] == entry["plugin"]
            else f"{entry['plugin']} ({entry['package']})"
        )
        table.add_row(entry["component"], entry["kind"], plugin, entry["version"], entry["description"])
    out.print(table)
    for entry in listing["components"] if verbose else ():
        options = Table("option", "default", "description", title=f"{entry['kind']} {entry['component']}")
        for option in entry["options"]:
            default = "(required)" if option["required"] else repr(option["default"])
            options.add_row(option["name"], default, option["description"])
        out.print(options)
    for broken in listing["broken"]:
        err.print(
            f"plugin {broken['plugin']!r} ({broken['package']} {broken['version']}) failed: {broken['error']}"
        )


@app.command()
def schema(
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="write to this file")  # noqa: UP045
    ] = None,
) -> None:
    """Print the JSON Schema of recipes for the installed plugins."""
    from ctframe.registry.plugins import get_registry
    from ctframe.registry.schema import recipe_json_schema
    from ctframe.storage.files import write_text

    text = json.dumps(recipe_json_schema(get_registry()), indent=2, default=str)
    if output is None:
        print(text)
    else:
        write_text(output, text + "\n")
        out.print(f"wrote {output}")


def _pairs(values: list[str] | None) -> dict[str, str]:
    pairs = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CtframeError(f"--set expects key=value, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


@app.command()
def audit(
    root: Annotated[Path, typer.Argument(help="dataset folder")],
    overrides: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="key=value passed to the auditor")  # noqa: UP045
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Audit a dataset folder: counts, formats, duplicates, shortcuts."""
    from dataclasses import asdict

    from ctframe.registry.plugins import get_registry

    if not root.exists():
        raise CtframeError(f"{root}: folder not found; pass the dataset root folder")
    report = get_registry().manager.hook.ctframe_audit(root=root, options=_pairs(overrides))
    if report is None:
        raise CtframeError(f"{root}: no installed dataset plugin recognises this folder layout")
    if as_json:
        print(json.dumps(asdict(report), indent=2, default=str))
        return
    out.print(f"[bold]{report.title}[/bold]")
    for section in report.sections:
        table = Table(*section.columns, title=section.title)
        for row in section.rows:
            table.add_row(*(str(cell) for cell in row))
        out.print(table)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Regenerate report.html and the plots of RUN_DIR."""
    from ctframe.report import build_report

    out.print(f"wrote {build_report(run_dir)}")


@app.command()
def compare(run_dirs: Annotated[list[Path], typer.Argument(help="run directories")]) -> None:
    """Show runs side by side."""
    from ctframe.workflows.compare import compare_runs

    out.print(compare_runs(run_dirs))


@app.command()
def cv(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe TOML file")] = None,  # noqa: UP045
    folds: Annotated[int, typer.Option("--folds", "-k", min=2, help="number of folds")] = 5,
    overrides: SetOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="folder for the CV directory")  # noqa: UP045
    ] = None,
    resume: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--resume", help="finish the interrupted cross-validation in this folder"),
    ] = None,
) -> None:
    """Cross-validate RECIPE on K stratified, group-disjoint folds; pooled out-of-fold metrics."""
    from ctframe.runtime.distributed import world_size
    from ctframe.workflows.crossval import resume_cv, start_cv

    if world_size() > 1:
        raise CtframeError("ctframe cv runs in one process, not under torchrun; start it with ctframe cv")

    if resume is not None:
        if recipe is not None or overrides or output is not None:
            raise CtframeError("--resume takes only the CV folder; it reuses that cross-validation's plan")
        folder = resume_cv(resume, console=err)
    elif recipe is None:
        raise CtframeError("name a recipe file (ctframe cv RECIPE --folds K) or use --resume CV_DIR")
    else:
        folder = start_cv(recipe, folds, overrides or (), output=output, console=err)
    out.print(f"cross-validation: {folder}")


OnBadImage = Annotated[
    str, typer.Option("--on-bad-image", help="error: stop at an unreadable file; skip: list it and go on")
]


def _on_bad_image(value: str) -> str:
    if value not in ("error", "skip"):
        raise CtframeError(f"--on-bad-image takes 'error' or 'skip', not {value!r}")
    return value


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="a model .json, or a run directory")],
    paths: Annotated[list[Path], typer.Argument(help="image files or folders (searched recursively)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write")] = Path("predictions.csv"),
    key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--model", "-m", help="which model of a run (default: the last one, e.g. finetuned)"),
    ] = None,
    on_bad_image: OnBadImage = "error",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per step")] = 32,
) -> None:
    """Predict class probabilities for new images with a trained model."""
    from ctframe.workflows.predict import predict_files

    result = predict_files(
        model,
        paths,
        output,
        model_key=key,
        on_bad_image=_on_bad_image(on_bad_image),
        batch_size=batch_size,
        console=err,
    )
    for file, reason in result.skipped:
        err.print(f"skipped {file}: {reason}", markup=False)
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    out.print(
        f"wrote {result.output} ({result.count} images{skipped}; {result.images_per_s:.1f} images/s, "
        f"model loaded in {result.load_seconds:.1f} s)"
    )


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="a completed run directory")],
    data: Annotated[
        Path, typer.Option("--data", help="labelled folder (one sub-folder per class) or a dataset recipe")
    ],
    class_map: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--class-map", help="DATA=MODEL class pairs, e.g. CT_COVID=COVID,CT_NonCOVID=non-COVID"),
    ] = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="results go to RUN/external/NAME (default: the data folder's name)"),
    ] = None,
    on_bad_image: OnBadImage = "error",
) -> None:
    """Evaluate every model of a run on external labelled data, at each model's stored threshold."""
    from ctframe.workflows.external import evaluate_external

    folder = evaluate_external(
        run_dir, data, class_map=class_map, name=name, on_bad_image=_on_bad_image(on_bad_image), console=err
    )
    out.print(f"external evaluation: {folder}")


@app.command()
def metrics(
    predictions: Annotated[Path, typer.Argument(help="a predictions CSV (true_class, p_<class> columns)")],
    positive: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--positive", help="the positive class (default: the file's positive_class column)"),
    ] = None,
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--threshold", min=0.0, max=1.0, help="decision threshold (default: the file's or 0.5)"),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="folder for metrics and report (default: <file>_metrics)"),
    ] = None,
    metric: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--metric", help="metric component to compute (repeatable; default: all installed)"),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="bootstrap resamples for CIs")] = 1000,
) -> None:
    """Score any predictions file: metrics with bootstrap CIs, calibration and an HTML report."""
    from ctframe.workflows.scoring import score_predictions

    folder = score_predictions(
        predictions,
        positive=positive,
        threshold=threshold,
        output=output,
        metric_names=metric or (),
        bootstrap=bootstrap,
        console=err,
    )
    out.print(f"metrics and report: {folder}")


from ctframe.commands import model as _model_commands  # noqa: E402, F401 - registers export and explain


def _add_plugin_commands() -> None:
    # Plugin commands join at the first command lookup, so `--version` (handled while parsing) builds no
    # registry; app.registered_commands stays core-only, so names are checked against core commands alone.
    from ctframe.registry.plugins import plugin_command_group

    app.info.cls = plugin_command_group(lambda line: err.print(f"warning: {line}", markup=False))


def _error(line: str) -> None:
    """Print one line whatever the message holds: a library's extra lines are dropped, and characters a
    terminal cannot take (a file name's undecodable bytes) are escaped as in ctframe's CSV files."""
    from ctframe.base.filenames import ensure_escaped

    first = line.strip().splitlines()[0] if line.strip() else line
    err.print(ensure_escaped(first), soft_wrap=True, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code: 0 success, 1 internal failure, 2 user error, 130 interrupted.

    The one place where errors become output: one line each, never a traceback (set CTFRAME_DEBUG=1
    to see one; inside a run it is in RUN/run.log).
    """
    from ctframe.base.errors import logged_in
    from ctframe.runtime.performance import tune_allocator
    from ctframe.storage.files import first_line

    tune_allocator()  # process-wide and before any tensor exists: see ctframe.runtime.performance
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        _add_plugin_commands()
        result = app(args=args, prog_name="ctframe", standalone_mode=False)
        if result == 130:  # typer turns a KeyboardInterrupt inside a command into this exit code
            err.print("interrupted")
        return result if isinstance(result, int) else 0
    except typer.Exit as stop:
        return stop.exit_code
    except TyperException as error:  # usage errors from argument parsing
        if type(error).__name__ == "NoArgsIsHelpError":  # plain `ctframe`: the help text is the answer
            error.show()  # type: ignore[attr-defined]
            return 2
        context = getattr(error, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        _error(f"error: {error.format_message().rstrip('.')}{hint}")
        return 2
    except typer.Abort as abort:
        # typer raises Abort for an EOFError too; ctframe never reads the terminal, so that one is a
        # bug (a file cut short that nothing caught), not Ctrl-D
        if isinstance(abort.__cause__, EOFError):
            return _internal(abort.__cause__, logged_in(abort.__cause__))
        err.print("interrupted")
        return 130
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except OSError as error:  # a path the user named cannot be read or written
        where = f": {error.filename}" if error.filename else ""
        reason = error.strerror or first_line(error)
        _error(f"error: {reason}{where}; check the path and its permissions")
        return 2
    except CtframeError as error:
        _error(f"error: {error}")
        return error.exit_code
    except Exception as error:
        return _internal(error, logged_in(error))


def _internal(error: BaseException, log: Path | None) -> int:
    from ctframe.storage.files import first_line

    if os.environ.get(DEBUG_ENV):
        raise error
    where = f"; the traceback is in {log}" if log else f" (set {DEBUG_ENV}=1 for the traceback)"
    _error(f"internal error: {type(error).__name__}: {first_line(error)}{where}")
    return 1
