"""The trainer's side of the contracts: what a trainer sees (:class:`TrainingData`), what it returns
(:class:`TrainedModel` with its history), the :class:`Trainer` protocol the engine relies on, and the
:class:`Predictions` the engine makes of every returned model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ctframe.base.errors import PluginError

if TYPE_CHECKING:  # keep `import ctframe` free of torch
    import numpy as np
    import torch
    from torch.utils.data import Dataset

    from ctframe.base.contracts import BuildContext
    from ctframe.runtime.model import Classifier


@dataclass(frozen=True)
class Predictions:
    """Scores of one model on one split."""

    sample_ids: tuple[str, ...]
    labels: np.ndarray
    """True class index per sample, shape ``(N,)``."""
    probabilities: np.ndarray
    """Probability per class, shape ``(N, num_classes)``, rows summing to 1."""


@dataclass(frozen=True)
class TrainingData:
    """What a trainer sees of the data: everything but the test split, which only the engine reads."""

    class_names: tuple[str, ...]
    positive_class: str
    train: Dataset
    val: Dataset
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    num_workers: int = 0
    groups: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> group (patient, series) when the dataset gives groups: ``DataSplits.groups`` as is
    (it may name test samples too, ids only); empty otherwise. Trainers that learn from group labels
    (``mil``) need it."""
    group_unit: str = "group"
    """What one group is (``"patient"``, ``"series"``...), for the trainer's messages and files."""

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)


@dataclass(frozen=True)
class TrainedModel:
    """One model a trainer hands back; the engine predicts, evaluates and saves it.

    ``state_dict`` holds the weights of the whole :class:`~ctframe.runtime.model.Classifier` (keys
    ``backbone.*`` and ``head.*``, as ``Classifier.state_dict()`` names them).
    """

    key: str
    """Short identifier used in file names, e.g. ``"initial"``; letters, digits, ``_`` and ``-``."""
    title: str
    """Row title in reports, e.g. ``"Initial Model"``."""
    state_dict: Mapping[str, torch.Tensor]
    history: Sequence[Mapping[str, Any]] = ()
    """Per-epoch records; see :data:`HISTORY_COLUMNS` for the columns the report reads."""


HISTORY_COLUMNS = {
    "epoch": "1-based epoch number within the model's training",
    "train_loss": "mean training loss of the epoch (including any regularisation penalty)",
    "val_loss": "validation loss after the epoch (what early stopping watches)",
    "val_accuracy": "validation accuracy after the epoch",
    "images_per_s": "training throughput of the epoch",
    "seconds": "wall time of the epoch",
    "phase": "name of the training stage the epoch belongs to; the training plot draws one colour per phase",
}
"""History columns the core's report and ``compare`` read. ``epoch`` and ``train_loss`` are required;
the others are shown when present; any further columns are kept in the CSV and otherwise ignored."""
REQUIRED_HISTORY_COLUMNS = ("epoch", "train_loss")


@runtime_checkable
class Trainer(Protocol):
    """Everything the engine uses of a trainer. The engine checks these members once, as soon as the
    factory returns (:func:`check_trainer_contract`), and reads them directly afterwards."""

    precision: str | None
    """The training precision setting (``"auto"``, ``"fp32"``, ``"bf16"``, see
    ``ctframe.runtime.precision``), which ``environment.json`` records with what it resolved to;
    ``None`` for a trainer that chooses its own arithmetic (recorded as "set by the trainer")."""

    supports_distributed: bool
    """True when ``fit`` shards its work over the processes of a torchrun launch (docs/distributed.md);
    a run of more than one process refuses a trainer with ``False``."""

    def fit(self, model: Classifier, data: TrainingData, context: BuildContext) -> list[TrainedModel]:
        """Train ``model`` inside ``context.run_dir``; return the weights of each model to evaluate.

        An empty list means the trainer trained nothing (every phase has 0 epochs): the engine
        then evaluates the model as built, and says so.
        """
        ...


_TRAINER_MEMBERS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "fit": ("a method fit(model, data, context)", callable),
    "precision": ('"auto", "fp32", "bf16" or None', lambda value: value is None or isinstance(value, str)),
    "supports_distributed": ("True or False", lambda value: isinstance(value, bool)),
}


def check_trainer_contract(trainer: Any, who: str) -> None:
    """Refuse in one line a trainer that lacks a :class:`Trainer` member or holds the wrong kind of value.

    A missing member is an error, not a silent default: a default would hide a trainer that forgot to
    say whether it shards its work, or record a precision nobody chose.
    """
    for name, (wanted, fits) in _TRAINER_MEMBERS.items():
        if not hasattr(trainer, name):
            raise PluginError(
                f"{who} lacks `{name}` ({wanted}), part of the Trainer contract (docs/plugins.md)"
            )
        value = getattr(trainer, name)
        if not fits(value):
            raise PluginError(
                f"{who} has {name} = {value!r}; the Trainer contract wants {wanted} (docs/plugins.md)"
            )
