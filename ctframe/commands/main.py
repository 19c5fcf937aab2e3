"""The ``ctframe`` entry point: registers every command, adds plugin commands, and maps errors to exit codes.

Errors become one line and an exit code here only: 0 success, 2 user error (bad recipe, data or
arguments), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from typer.exceptions import TyperException

from ctframe.base.errors import CtframeError, logged_in
from ctframe.base.filenames import ensure_escaped
from ctframe.commands import shared
from ctframe.registry.commands import plugin_command_group
from ctframe.runtime.performance import tune_allocator
from ctframe.storage.files import first_line

# Importing a command module registers its command; `ctframe --help` lists them in this order.
# isort: off
from ctframe.commands import run, validate, list_plugins, schema, audit, report, compare, cv  # noqa: F401
from ctframe.commands import predict, evaluate, metrics, export, explain, demo_data, card  # noqa: F401
# isort: on

DEBUG_ENV = "CTFRAME_DEBUG"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code: 0 success, 1 internal failure, 2 user error, 130 interrupted.

    The one place where errors become output: one line each, never a traceback (set CTFRAME_DEBUG=1
    to see one; inside a run it is in RUN/run.log).
    """
    tune_allocator()  # process-wide and before any tensor exists: see ctframe.runtime.performance
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        _add_plugin_commands()
        result = shared.app(args=args, prog_name="ctframe", standalone_mode=False)
        if result == 130:  # typer turns a KeyboardInterrupt inside a command into this exit code
            shared.err.print("interrupted")
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
        shared.err.print("interrupted")
        return 130
    except KeyboardInterrupt:
        shared.err.print("interrupted")
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


def _add_plugin_commands() -> None:
    # Plugin commands join at the first command lookup, so `--version` (handled while parsing) builds no
    # registry; app.registered_commands stays core-only, so names are checked against core commands alone.
    def warn(line: str) -> None:
        shared.err.print(f"warning: {line}", markup=False)

    shared.app.info.cls = plugin_command_group(warn)


def _error(line: str) -> None:
    """Print one line whatever the message holds: a library's extra lines are dropped, and characters a
    terminal cannot take (a file name's undecodable bytes) are escaped as in ctframe's CSV files."""
    first = line.strip().splitlines()[0] if line.strip() else line
    shared.err.print(ensure_escaped(first), soft_wrap=True, markup=False, highlight=False)


def _internal(error: BaseException, log: Path | None) -> int:
    if os.environ.get(DEBUG_ENV):
        raise error
    where = f"; the traceback is in {log}" if log else f" (set {DEBUG_ENV}=1 for the traceback)"
    _error(f"internal error: {type(error).__name__}: {first_line(error)}{where}")
    return 1
