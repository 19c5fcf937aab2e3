"""Typed errors. The CLI turns each into one line and an exit code in one place.

| code | meaning |
|---|---|
| 0   | success |
| 1   | internal failure (a bug); the traceback is in the run's ``run.log`` when there is a run |
| 2   | a problem the user can fix: bad recipe, data, run directory, file or command line |
| 130 | interrupted (Ctrl-C); a run can be continued with ``ctframe run --resume`` |
"""

from __future__ import annotations

from pathlib import Path


class CtframeError(Exception):
    """A problem the user can fix (bad recipe, bad data, bad arguments). Exit code 2."""

    exit_code = 2


class RecipeError(CtframeError):
    """A recipe file that cannot be read or does not validate."""


class PluginError(CtframeError):
    """A plugin that failed to load, or two plugins that clash."""


class DataError(CtframeError):
    """Input data that is missing, empty or unreadable."""


class MissingExtraError(CtframeError):
    """An optional package a feature needs is not installed. The message names the feature and the
    install command; the report shows it as a note, once, never as a failure."""


class BadFileError(DataError):
    """One input file that cannot be used (damaged, not an image, not a regular file). A reader's images
    raise it from ``__getitem__`` when only decoding finds the damage: ``ctframe predict`` then names the
    file, or with ``--on-bad-image skip`` leaves it out and lists ``file`` and ``reason``."""

    def __init__(self, file: str, reason: str, hint: str = "remove it or pass --on-bad-image skip"):
        super().__init__(f"{file}: {reason}; {hint}")
        self.file, self.reason, self.hint = file, reason, hint

    def __reduce__(self):  # picklable although __init__ takes other arguments than the message
        return type(self), (self.file, self.reason, self.hint)


class RunError(CtframeError):
    """A run directory that cannot be used (nothing to resume, edited or damaged files)."""


class WeightsError(DataError):
    """A weights file that is missing, unreadable, unreachable or made for another model (the backbone
    plugins' one error for their ``weights`` option)."""


_LOG_ATTRIBUTE = "_ctframe_log"


def note_log(error: BaseException, log: Path) -> None:
    """Remember that ``error``'s traceback was written to ``log`` (a run's ``run.log``).

    The exception keeps its type for callers of the Python API; the command line reads the path back
    with :func:`logged_in` and prints it instead of the traceback.
    """
    setattr(error, _LOG_ATTRIBUTE, Path(log))


def logged_in(error: BaseException) -> Path | None:
    """The log file that holds ``error``'s traceback, if the engine wrote it to one."""
    return getattr(error, _LOG_ATTRIBUTE, None)
