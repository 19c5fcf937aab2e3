"""ctframe: a plugin-based image-classification framework.

The package's names are those of the plugin API, :mod:`ctframe.api`. Importing it is cheap: no torch
and no plugin; the registry is built on first use.
"""

from ctframe.api import *  # noqa: F403 - the public face is the plugin API
from ctframe.api import __all__ as _api
from ctframe.base.version import __version__

__all__ = [*_api, "__version__", "load_model"]  # noqa: F405 - load_model: __getattr__


def __getattr__(name: str):
    # load_model needs torch; importing ctframe must stay cheap, so it is resolved on first use (PEP 562)
    if name == "load_model":
        from ctframe.runtime.loading import load_model

        return load_model
    raise AttributeError(f"module 'ctframe' has no attribute {name!r}")
