"""ctframe: a plugin-based image-classification framework.

Importing this package is cheap and imports no plugin; the registry is built on first use.
"""

from ctframe.contracts import (
    AuditReport,
    AuditSection,
    BuildContext,
    DataSplits,
    Kind,
    Layer,
    MetricInput,
    Predictions,
    TrainedModel,
)
from ctframe.errors import CtframeError, DataError, PluginError, RecipeError, RunError
from ctframe.hookspecs import hookimpl
from ctframe.options import NoOptions, Options, RecipePath

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "AuditSection",
    "BuildContext",
    "CtframeError",
    "DataError",
    "DataSplits",
    "Kind",
    "Layer",
    "MetricInput",
    "NoOptions",
    "Options",
    "PluginError",
    "Predictions",
    "RecipeError",
    "RecipePath",
    "RunError",
    "TrainedModel",
    "__version__",
    "hookimpl",
]
