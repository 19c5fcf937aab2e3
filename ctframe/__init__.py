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
    Segment,
    TrainedModel,
    TrainingData,
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
    "Segment",
    "TrainedModel",
    "TrainingData",
    "__version__",
    "hookimpl",
    "load_model",
]


def __getattr__(name: str):
    # load_model needs torch; importing ctframe must stay cheap, so it is resolved on first use
    if name == "load_model":
        from ctframe.modelfile import load_model

        return load_model
    raise AttributeError(f"module 'ctframe' has no attribute {name!r}")
