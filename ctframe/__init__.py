"""ctframe: a plugin-based image-classification framework.

The package's names are those of the plugin API, :mod:`ctframe.api`. Importing it is cheap: no torch
and no plugin; the registry is built on first use.
"""

from ctframe.api import *  # noqa: F403 - the public face is the plugin API
from ctframe.api import __all__ as _api
from ctframe.base.version import __version__

__all__ = [*_api, "__version__", "load_model", "run"]  # noqa: F405 - load_model, run: __getattr__


def __getattr__(name: str):
    # load_model and run need torch; importing ctframe must stay cheap, so they are resolved on first use
    # (PEP 562); ctframe.workflows.python_api, docs/python.md
    if name in ("load_model", "run"):
        from ctframe.workflows import python_api

        return getattr(python_api, name)
    raise AttributeError(f"module 'ctframe' has no attribute {name!r}")
