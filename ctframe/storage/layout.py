"""Every file and folder of a run directory, declared once: no other module spells these names.

An entry's *places* name the commands whose folders hold it: ``run`` (a run directory), ``evaluate``
(an external evaluation, ``RUN/external/<name>/``), ``cv`` (a cross-validation folder, ``CV/``) and
``metrics`` (what ``ctframe metrics PREDICTIONS.csv`` writes, ``<stem>_metrics/``).
Each entry says which places hold it, who writes it and in what format. A name may carry one
``{placeholder}`` (``history_{key}.csv``: one file per model key), or a second one after it
(``predictions_{key}_{unit}.csv``); :meth:`RunFile.path` fills them in, :meth:`RunFile.match` reads the
first back. Names are relative to the place and ``/``-separated.

Files a plugin writes are declared by that plugin with the same :class:`RunFile` (its ``run_files``
module, ``RUN_FILES``); :data:`CORE` lists the core's own, the only ones the core report reads.
``tests/core/test_layout.py`` checks that no other module spells a declared name and that
docs/recipes.md documents exactly these entries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Kind = Literal["file", "folder"]
Place = Literal["run", "evaluate", "cv", "metrics"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class _HasPath(Protocol):  # a RunDirectory (kept structural: rundir imports this module)
    @property
    def path(self) -> Path: ...


Where = _HasPath | os.PathLike[str] | str


def _folder(where: Where) -> Path:
    return Path(where.path if hasattr(where, "path") else where)  # type: ignore[union-attr]


@dataclass(frozen=True)
class RunFile:
    """One file or folder of a run directory."""

    name: str
    """Relative to the place, ``/``-separated; at most two ``{placeholders}`` (e.g. ``{key}``, ``{unit}``)."""
    kind: Kind
    owner: str
    """``"core"`` or the name of the plugin that writes it."""
    writer: str
    """The module that writes it."""
    format: str
    """``json``, ``csv``, ``toml``, ``text``, ``html``, ``png``, ``safetensors``, ...; ``""`` for a folder."""
    description: str
    readers: tuple[str, ...] = ()
    places: tuple[Place, ...] = ("run",)

    def __post_init__(self) -> None:
        names = self.placeholders
        if len(names) > 2 or len(set(names)) < len(names) or self.name.endswith("/"):
            raise ValueError(f"{self.name!r}: at most two different placeholders, and no trailing '/'")

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholders' names in order (``("key", "unit")`` for ``predictions_{key}_{unit}.csv``)."""
        return tuple(_PLACEHOLDER.findall(self.name))

    @property
    def placeholder(self) -> str | None:
        """The first placeholder's name (``"key"`` for ``history_{key}.csv``), ``None`` for a fixed name."""
        return self.placeholders[0] if self.placeholders else None

    @property
    def display(self) -> str:
        """How docs and messages show it: ``history_<key>.csv``, ``models/`` for a folder."""
        shown = _PLACEHOLDER.sub(r"<\1>", self.name)
        return shown + "/" if self.kind == "folder" else shown

    def filename(self, key: str | int | None = None, **more: str | int) -> str:
        """The relative name, with ``key`` in place of the first placeholder (given exactly when there is
        one) and ``more`` in place of the others by name (``unit="patient"``)."""
        if (key is None) != (self.placeholder is None):
            raise ValueError(f"{self.name}: a key is needed exactly when the name has a placeholder")
        values = {} if key is None else {self.placeholders[0]: str(key)}
        values.update((name, str(value)) for name, value in more.items())
        if set(values) != set(self.placeholders):
            raise ValueError(f"{self.name}: give a value for each of {list(self.placeholders)}, no other")
        for value in values.values():
            if not value or "/" in value or value in (".", ".."):
                raise ValueError(f"{self.name}: {value!r} cannot stand in a file name")
        return _PLACEHOLDER.sub(lambda found: values[found[1]], self.name)

    def path(self, where: Where, key: str | int | None = None, **more: str | int) -> Path:
        """This entry inside ``where`` (a folder or a RunDirectory)."""
        return _folder(where) / self.filename(key, **more)

    @property
    def pattern(self) -> re.Pattern[str]:
        """A regex for the relative name; each placeholder becomes a group of its name (``(?P<key>...)``).
        A second placeholder holds no ``_``, so ``predictions_a_b_patient.csv`` reads as key ``a_b``."""
        parts = _PLACEHOLDER.split(self.name)  # [text, placeholder, text, ...]
        regex = "".join(
            re.escape(part) if index % 2 == 0 else f"(?P<{part}>{'[^/]+' if index == 1 else '[^/_]+'})"
            for index, part in enumerate(parts)
        )
        return re.compile(regex)

    def match(self, name: str) -> str | None:
        """The key that ``name`` (relative, ``/``-separated) carries, or ``None`` if it is not this
        entry's. A fixed name has no key: it matches itself with ``""``."""
        found = self.pattern.fullmatch(name)
        return None if found is None else found[self.placeholder] if self.placeholder else ""

    def find(self, where: Where) -> dict[str, Path]:
        """Every existing instance of a patterned entry in ``where``: key -> path, sorted by key."""
        folder = _folder(where)
        parent = Path(self.name).parent
        candidates: Iterator[Path] = (folder / parent).iterdir() if (folder / parent).is_dir() else iter(())
        found = {}
        for path in sorted(candidates):
            key = self.match(path.relative_to(folder).as_posix())
            if key and (path.is_dir() if self.kind == "folder" else path.is_file()):
                found[key] = path
        return found


def _core(name: str, kind: Kind, format: str, writer: str, description: str, *readers: str,
          places: tuple[Place, ...] = ("run",)) -> RunFile:  # fmt: skip
    return RunFile(name, kind, "core", writer, format, description, tuple(readers), places)


_EVALUATED: tuple[Place, ...] = ("run", "evaluate", "cv", "metrics")  # where ctframe.evaluation writes
_CV: tuple[Place, ...] = ("cv",)
_ENGINE = "ctframe.workflows.engine"
_SCORED = "ctframe.workflows.scored"  # predictions, evaluation and model files after training
_REPORT = "ctframe.report"
_EVALUATION = "ctframe.evaluation.outputs"
_MODELFILE = "ctframe.storage.modelfile"
_CROSSVAL = "ctframe.workflows.crossval"
_EXTERNAL = "ctframe.workflows.external"
_COMPARE = "ctframe.workflows.compare"

# fmt: off
RECIPE = _core("recipe.toml", "file", "toml", _ENGINE,
               "the resolved recipe: every default filled in, every path absolute",
               _ENGINE, _CROSSVAL, _EXTERNAL, _COMPARE, _REPORT)
ENVIRONMENT = _core("environment.json", "file", "json", _ENGINE,
                    "versions, device, seed, precision, git commit", _REPORT)
ENVIRONMENT_RESUME = _core("environment_resume.json", "file", "json", _ENGINE,
                           "the same, for the latest resume")
STATUS = _core("status.json", "file", "json", _ENGINE,
               "running, evaluated (only the report left), completed (written last), interrupted or failed",
               _ENGINE, _CROSSVAL, _REPORT)
LOG = _core("run.log", "file", "text", _ENGINE, "the log, with the traceback of an internal failure", _REPORT)
INTEGRITY = _core("integrity.json", "file", "json", "ctframe.storage.integrity",
                  "the sha256 of every file a resume relies on", "ctframe.storage.integrity")
SPLIT_SUMMARY = _core("split_summary.json", "file", "json", _ENGINE,
                      "classes, split sizes and what the dataset reports", _REPORT)
HISTORY = _core("history_{key}.csv", "file", "csv", "ctframe.storage.history",
                "one model's per-epoch records", _REPORT)
PREDICTIONS = _core("predictions_{key}.csv", "file", "csv", _EVALUATION,
                    "one model's test predictions: file, true class, probabilities, predicted class",
                    _REPORT, _CROSSVAL, "ctframe.workflows.export", places=_EVALUATED)
MODEL_METRICS = _core("metrics_{key}.json", "file", "json", _EVALUATION,
                      "one model's test metrics with confidence intervals", places=_EVALUATED)
METRICS = _core("metrics.json", "file", "json", _EVALUATION, "every model's test metrics and threshold",
                _REPORT, _COMPARE, _CROSSVAL, _EXTERNAL, places=_EVALUATED)
MODELS = _core("models", "folder", "", _SCORED, "the trained models", _MODELFILE)
MODEL_WEIGHTS = _core("models/{key}.safetensors", "file", "safetensors", _MODELFILE, "one model's weights",
                      "ctframe.runtime.loading")
MODEL_INFO = _core("models/{key}.json", "file", "json", _MODELFILE,
                   "what the weights are: components, classes, threshold, preprocessing", _MODELFILE)
MODEL_INDEX = _core("models/index.json", "file", "json", _SCORED, "the model keys in evaluation order",
                    _MODELFILE)
REPORT = _core("report.html", "file", "html", _REPORT, "the report, self-contained", places=_EVALUATED)
PLOTS = _core("plots", "folder", "", _REPORT, "the report's plots", places=_EVALUATED)
PLOT = _core("plots/{name}.png", "file", "png", "ctframe.report.context", "one plot of the report",
             places=_EVALUATED)
EXTERNAL = _core("external", "folder", "", _EXTERNAL, "external evaluations (ctframe evaluate)", _REPORT)
EXTERNAL_EVALUATION = _core("external/{name}", "folder", "", _EXTERNAL,
                            "one external evaluation, holding the files listed for it", _REPORT, _COMPARE)
SOURCE = _core("source.json", "file", "json", _EXTERNAL,
               "the external data, class map, counts and skipped files", places=("evaluate",))
CV_PLAN = _core("cv.json", "file", "json", _CROSSVAL, "the recipe, overrides and number of folds", _CROSSVAL,
                places=_CV)
CV_FOLDS = _core("folds.json", "file", "json", _CROSSVAL, "every fold's metrics with mean and sd", _REPORT,
                 places=_CV)
CV_FOLD = _core("fold-{fold}", "folder", "", _CROSSVAL, "one fold: an ordinary run directory", _CROSSVAL,
                places=_CV)
OOF_PREDICTIONS = _core("oof_predictions_{key}.csv", "file", "csv", _CROSSVAL,
                        "the folds' predictions pooled (removed once evaluated)", places=_CV)
GROUP_PREDICTIONS = _core("predictions_{key}_{unit}.csv", "file", "csv", _EVALUATION,
                          "one model's test predictions per group (patient, series): aggregated "
                          "probabilities, decision, group threshold, top images", places=_EVALUATED)
SUBGROUPS = _core("subgroups.json", "file", "json", "ctframe.evaluation.subgroups",
                  "test metrics with CIs and calibration per subgroup of a --subgroups CSV or of "
                  "the dataset's attributes", "ctframe.report.subgroups",
                  places=("run", "evaluate", "metrics"))
MODEL_CARD = _core("model_card.md", "file", "markdown", "ctframe.workflows.card",
                   "the model card (ctframe card): data, training, results, each citing its file", _REPORT)
# fmt: on

CORE: tuple[RunFile, ...] = (
    RECIPE, ENVIRONMENT, ENVIRONMENT_RESUME, STATUS, LOG, INTEGRITY, SPLIT_SUMMARY, HISTORY, PREDICTIONS,
    MODEL_METRICS, METRICS, MODELS, MODEL_WEIGHTS, MODEL_INFO, MODEL_INDEX, REPORT, PLOTS, PLOT, EXTERNAL,
    EXTERNAL_EVALUATION, SOURCE, CV_PLAN, CV_FOLDS, CV_FOLD, OOF_PREDICTIONS, GROUP_PREDICTIONS,
    SUBGROUPS, MODEL_CARD,
)  # fmt: skip
"""The core's entries: what ctframe itself writes (plugins declare theirs in their ``run_files``)."""

RUN_MARKERS = (RECIPE, METRICS)
"""A folder holding either can be reported on: a run, an external evaluation, a cross-validation folder."""


def unit_in_names(unit: str) -> str:
    """A group unit as it stands in a file name (:data:`GROUP_PREDICTIONS`): letters, digits and ``-``,
    so no ``_`` blurs where the model key ends (``"patient id"`` -> ``"patient-id"``)."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", unit).strip("-") or "group"
