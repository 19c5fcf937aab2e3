"""Typed errors. The CLI turns each into one line and an exit code in one place."""

from __future__ import annotations


class CtframeError(Exception):
    """A problem the user can fix (bad recipe, bad data, bad arguments). Exit code 2."""

    exit_code = 2


class RecipeError(CtframeError):
    """A recipe file that cannot be read or does not validate."""


class PluginError(CtframeError):
    """A plugin that failed to load, or two plugins that clash."""


class DataError(CtframeError):
    """Input data that is missing, empty or unreadable."""


class RunError(CtframeError):
    """A run directory that cannot be used (for example, nothing to resume)."""
