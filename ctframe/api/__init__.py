"""The plugin API: the only part of ctframe a plugin imports (``ctframe.api`` and its modules).

This module holds the light names (no torch): component kinds and contracts, options, errors, the hook
marker and the specs' callback types, atomic file writes, file-name escaping and the run directory's file
names (:mod:`ctframe.storage.layout`; a plugin declares its own files with ``RunFile``). Heavier helpers
live in submodules that a plugin imports when it needs them:

* :mod:`ctframe.api.training`: the classifier, checkpoints, precision, speed settings, torchrun;
* :mod:`ctframe.api.data`: the shared dataset split, recorded writes in a run, checksummed downloads;
* :mod:`ctframe.api.metrics`: input checks and decisions shared by metric components;
* :mod:`ctframe.api.recipes`: loading a recipe and building its model (commands a plugin adds).
* :mod:`ctframe.api.report`: what a report section needs (``ctframe_report_sections``).

Everything else under ``ctframe`` is internal and may move between releases;
``tests/core/test_plugin_api.py`` fails when a module under ``plugins/`` imports it.
"""

from ctframe.base.contracts import (
    AuditReport,
    AuditSection,
    Backbone,
    BuildContext,
    Component,
    DataSplits,
    FileReader,
    Head,
    Layer,
    Metric,
    MetricInput,
    ReadFiles,
    Segment,
)
from ctframe.base.errors import (
    BadFileError,
    CtframeError,
    DataError,
    MissingExtraError,
    PluginError,
    RecipeError,
    RunError,
    WeightsError,
)
from ctframe.base.filenames import ensure_escaped, escape_path, unescape_name
from ctframe.base.hookspecs import Register, RegisterSection, hookimpl
from ctframe.base.kinds import KINDS, Kind
from ctframe.base.model_tools import INPUT_NAME, OUTPUT_NAME, Explainer, Exporter
from ctframe.base.options import CHANNELS_LAST_MOVED, PRECISION_MOVED, NoOptions, Options, RecipePath
from ctframe.base.training import Predictions, TrainedModel, Trainer, TrainingData
from ctframe.storage.files import atomic_open, cache_folder, first_line, write_bytes, write_json, write_text
from ctframe.storage.layout import (  # the run directory's files (plugins declare theirs with RunFile)
    CORE,
    CV_FOLD,
    CV_FOLDS,
    CV_PLAN,
    ENVIRONMENT,
    ENVIRONMENT_RESUME,
    EXTERNAL,
    EXTERNAL_EVALUATION,
    HISTORY,
    INTEGRITY,
    LOG,
    METRICS,
    MODEL_INDEX,
    MODEL_INFO,
    MODEL_METRICS,
    MODEL_WEIGHTS,
    MODELS,
    OOF_PREDICTIONS,
    PLOT,
    PLOTS,
    PREDICTIONS,
    RECIPE,
    REPORT,
    SOURCE,
    SPLIT_SUMMARY,
    STATUS,
    RunFile,
)

__all__ = [
    "CHANNELS_LAST_MOVED",
    "CORE",
    "CV_FOLD",
    "CV_FOLDS",
    "CV_PLAN",
    "ENVIRONMENT",
    "ENVIRONMENT_RESUME",
    "EXTERNAL",
    "EXTERNAL_EVALUATION",
    "HISTORY",
    "INPUT_NAME",
    "INTEGRITY",
    "KINDS",
    "LOG",
    "METRICS",
    "MODELS",
    "MODEL_INDEX",
    "MODEL_INFO",
    "MODEL_METRICS",
    "MODEL_WEIGHTS",
    "OOF_PREDICTIONS",
    "OUTPUT_NAME",
    "PLOT",
    "PLOTS",
    "PRECISION_MOVED",
    "PREDICTIONS",
    "RECIPE",
    "REPORT",
    "SOURCE",
    "SPLIT_SUMMARY",
    "STATUS",
    "AuditReport",
    "AuditSection",
    "Backbone",
    "BadFileError",
    "BuildContext",
    "Component",
    "CtframeError",
    "DataError",
    "DataSplits",
    "Explainer",
    "Exporter",
    "FileReader",
    "Head",
    "Kind",
    "Layer",
    "Metric",
    "MetricInput",
    "MissingExtraError",
    "NoOptions",
    "Options",
    "PluginError",
    "Predictions",
    "ReadFiles",
    "RecipeError",
    "RecipePath",
    "Register",
    "RegisterSection",
    "RunError",
    "RunFile",
    "Segment",
    "TrainedModel",
    "Trainer",
    "TrainingData",
    "WeightsError",
    "atomic_open",
    "cache_folder",
    "ensure_escaped",
    "escape_path",
    "first_line",
    "hookimpl",
    "unescape_name",
    "write_bytes",
    "write_json",
    "write_text",
]
