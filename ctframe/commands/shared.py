"""The application every command registers on, and what commands share: consoles, option types, helpers.

Commands print through ``shared.out`` and ``shared.err``, looked up when they run, so a caller (a test)
can swap the consoles. Each command module imports its workflow inside the command function: that is the
one place in the core where imports wait for a call, so that ``ctframe --version`` and ``--help`` never
load torch or a plugin. A command function takes one parameter per command-line option (typer builds the
options from them), so it may have more than the ~6 parameters other functions keep to.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ctframe.base.errors import CtframeError
from ctframe.base.version import __version__
from ctframe.storage.layout import METRICS

app = typer.Typer(
    name="ctframe",
    help="Plugin-based image classification: validated TOML recipes, reproducible run directories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Written to a file or a pipe, tables keep their full width instead of rich's 80 columns (log lines on
# such a console wrap at ctframe.workflows.runlog.LOG_WIDTH instead)
PIPE_WIDTH = 1000
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)

# typer reads these annotations to build the options, and it needs Optional (not X | None) in them
SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--set", "-s", help="override a recipe value: section.key=value (repeatable)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
SubgroupsOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--subgroups",
        help="CSV of file (or group, patient_id, ...) and subgroup columns (site, scanner, ...): "
        "also report the metrics per subgroup",
    ),
]
SubgroupColumnOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--subgroup-column",
        help="a column of the --subgroups CSV to report (repeatable; default: every non-key column)",
    ),
]
OnBadImage = Annotated[
    str, typer.Option("--on-bad-image", help="error: stop at an unreadable file; skip: list it and go on")
]
ModelArgument = Annotated[Path, typer.Argument(help="a model .json, or a run directory")]
ModelKey = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--model", "-m", help="which model of a run (default: the last one, e.g. finetuned)"),
]
ImagePaths = Annotated[list[Path], typer.Argument(help="image files or folders (searched recursively)")]
ForceOption = Annotated[
    bool, typer.Option("--force", help="replace an existing output (never a run's own files)")
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="images per step")]
ComponentSet = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--set", "-s", help="an option of the exporter or explainer: key=value (repeatable)"),
]


def pairs(values: list[str] | None) -> dict[str, str]:
    """``--set key=value`` options as a dict; anything without ``=`` (or without a key) is a user error."""
    result = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CtframeError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def on_bad_image(value: str) -> str:
    """The ``--on-bad-image`` value, checked: ``error`` or ``skip``."""
    if value not in ("error", "skip"):
        raise CtframeError(f"--on-bad-image takes 'error' or 'skip', not {value!r}")
    return value


def print_result(kind: str, folder: Path, as_json: bool) -> None:
    """The last line of a command that evaluated something: ``<kind>: FOLDER``, or with ``--json`` the
    folder and its ``metrics.json`` as one JSON object on stdout (the tables went to stderr)."""
    if not as_json:
        out.print(f"{kind}: {folder}", markup=False, highlight=False)
        return
    metrics = METRICS.path(folder)
    try:
        record = json.loads(metrics.read_text(encoding="utf-8")) if metrics.is_file() else None
    except (OSError, ValueError):
        record = None
    print(json.dumps({kind.replace(" ", "_"): str(folder), "metrics": record}, indent=2))


def print_skipped(skipped: Iterable[tuple[str, str]]) -> None:
    """One stderr line per image a command skipped (``--on-bad-image skip``)."""
    for file, reason in skipped:
        err.print(f"skipped {file}: {reason}", markup=False)


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
