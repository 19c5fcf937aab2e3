"""One phase of the schedule: what stays fixed while it trains (:class:`PhaseJob`) and what it resumes
from (:class:`PhaseState`).

The state is the whole resume point: ``<key>_last.pt`` is
:meth:`PhaseState.to_checkpoint` after every epoch, and a resume is :meth:`PhaseState.from_checkpoint`
of that file loaded into the phase's freshly built model, optimiser and early stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ctframe import BuildContext, RunError, TrainingData
from ctframe.api.training import distributed, resolve, resolve_channels_last
from ctframe_two_phase import checkpoints
from ctframe_two_phase.checkpoints import FrozenPart
from ctframe_two_phase.early_stopping import EarlyStopping
from ctframe_two_phase.loops import ImageSource
from ctframe_two_phase.optimizers import optimizer_name
from ctframe_two_phase.options import PhaseOptions, TwoPhaseOptions

Augment = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Phase:
    """One step of the schedule: which backbone layers train, and whether their BatchNorm statistics
    update (Keras' ``trainable``)."""

    index: int
    key: str
    title: str
    options: PhaseOptions
    unfreeze_last: int | None
    """Backbone layers that train, counted from the end; ``None``: all of them (``from_scratch``)."""
    update_batchnorm: bool


@dataclass(frozen=True)
class PhaseJob:
    """What one phase trains on and with; none of it changes while the phase runs."""

    phase: Phase
    options: TwoPhaseOptions
    """The trainer's settings (batch sizes, caches, speed)."""
    data: TrainingData
    context: BuildContext
    run_path: Path
    """The run directory (a scratch folder when there is none)."""
    class_weights: torch.Tensor | None = None
    """Training-loss weight per class, in label order (``trainer.class_weights``); ``None``: none."""

    @property
    def best_path(self) -> Path:
        return checkpoints.checkpoint_paths(self.run_path, self.phase.key)[0]

    @property
    def last_path(self) -> Path:
        return checkpoints.checkpoint_paths(self.run_path, self.phase.key)[1]

    @property
    def precision(self) -> str:
        """Resolved autocast precision of training and validation: ``"fp32"`` or ``"bf16"``."""
        return resolve(self.options.precision, self.context.device).resolved

    @property
    def channels_last(self) -> bool:
        return resolve_channels_last(self.options.channels_last, self.context.device)

    @property
    def eval_batch_size(self) -> int:
        # not larger by default: a no-grad forward of a bigger batch would be the run's memory peak
        return self.options.eval_batch_size or self.options.batch_size

    def images(self, dataset: Dataset, augment: Augment | None = None) -> ImageSource:
        """``dataset``'s images through a data loader, as this run's settings load them."""
        workers = self.options.num_workers
        workers = self.data.num_workers if workers is None else workers
        return ImageSource(dataset, self.context.device, workers, augment, self.channels_last)


@dataclass
class PhaseState:
    """Everything a phase resumes from. ``model`` and ``optimizer`` are the live objects its epochs train;
    the checkpoint holds their state dicts (the model's without the frozen part, see checkpoints.py)."""

    phase: str
    """The phase's key: ``"initial"`` or ``"finetuned"``."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    stopper: EarlyStopping
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per completed epoch (the columns of ``history_<key>.csv``)."""
    epoch: int = -1
    """The last completed epoch, 0-based; -1 before the first."""

    def finished(self, epochs: int) -> bool:
        """All ``epochs`` ran, or early stopping ended the phase."""
        return self.epoch + 1 >= epochs or self.stopper.stopped

    def completed(self, epoch: int, record: dict[str, Any]) -> None:
        """Note that ``epoch`` ran (its early-stopping update included) and what it measured."""
        self.history.append(record)
        self.epoch = epoch

    @cached_property
    def frozen(self) -> FrozenPart:
        """What this phase's checkpoints leave out. Hashed once, at the first checkpoint: a phase cannot
        change its frozen tensors, and the hash of a whole frozen backbone takes a while."""
        return FrozenPart.of(self.model)

    def weights(self, val_loss: float) -> dict[str, Any]:
        """``<key>_best.pt``: this epoch's weights."""
        return {
            "format": checkpoints.FORMAT,
            "phase": self.phase,
            "epoch": self.epoch,
            "val_loss": val_loss,
            "model": checkpoints.model_state(self.model, self.frozen.keys),
            "frozen": self.frozen.record(),
        }

    def to_checkpoint(self, rank_rng: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """``<key>_last.pt``: the weights, optimiser, early stopping, history and this process's RNG state.

        ``rank_rng``: every process's :func:`checkpoints.capture_rng` under torchrun, in rank order (all of
        them gather it; rank 0 writes the file)."""
        checkpoint = {
            "format": checkpoints.FORMAT,
            "phase": self.phase,
            "epoch": self.epoch,
            "model": checkpoints.model_state(self.model, self.frozen.keys),
            "frozen": self.frozen.record(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_name": optimizer_name(self.optimizer),
            "early_stopping": self.stopper.state_dict(),
            "history": [dict(record) for record in self.history],
            "rng": checkpoints.capture_rng(),
        }
        if rank_rng:
            checkpoint["rank_rng"] = [dict(entry) for entry in rank_rng]
        return checkpoint

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Mapping[str, Any],
        path: Path,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        stopper: EarlyStopping,
    ) -> PhaseState:
        """The state ``checkpoint`` (read from ``path`` by :func:`checkpoints.load`) holds, loaded into the
        phase's freshly built ``model``, ``optimizer`` and ``stopper``. Restores this process's RNG state as
        well (rank 0's when the number of processes changed since the checkpoint was written)."""
        saved, current = checkpoint["optimizer_name"], optimizer_name(optimizer)
        if saved != current:  # another optimiser's state would fail (or mislead) at the first step
            raise RunError(
                f"checkpoint {path} was trained with optimizer = {saved!r} and the recipe now says "
                f"{current!r}: set it back to resume, or start a new run"
            )
        checkpoints.restore(model, checkpoint, path)
        optimizer.load_state_dict(checkpoint["optimizer"])
        stopper.load_state_dict(checkpoint["early_stopping"])
        ranks = checkpoint.get("rank_rng") or ()
        own = distributed.active() and len(ranks) == distributed.world_size()
        checkpoints.restore_rng(ranks[distributed.rank()] if own else checkpoint["rng"])
        history = [dict(record) for record in checkpoint["history"]]
        return cls(str(checkpoint["phase"]), model, optimizer, stopper, history, int(checkpoint["epoch"]))
