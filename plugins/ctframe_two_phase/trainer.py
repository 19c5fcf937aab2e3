"""The study's two-phase schedule: train the head on a frozen backbone, then fine-tune the
backbone's last layers from the best phase-1 weights. Each phase's best model is evaluated."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ctframe import BuildContext, DataError, TrainedModel, TrainingData
from ctframe.api.training import (
    Classifier,
    distributed,
    folded_batchnorm,
    release_memory,
    resolve_channels_last,
    set_trainable_layers,
)
from ctframe_two_phase import checkpoints
from ctframe_two_phase.class_weights import class_weights
from ctframe_two_phase.early_stopping import EarlyStopping
from ctframe_two_phase.loops import EpochResult, Evaluation
from ctframe_two_phase.optimizers import build_optimizer
from ctframe_two_phase.options import TwoPhaseOptions
from ctframe_two_phase.phase import Phase, PhaseJob, PhaseState
from ctframe_two_phase.progress import EpochProgress, TensorBoardLog
from ctframe_two_phase.run_files import TENSORBOARD_PHASE
from ctframe_two_phase.runner import EpochRunner, build_runner
from ctframe_two_phase.schedules import learning_rate, set_learning_rate
from ctframe_two_phase.scratch import start_hints

COMPILE_OPTIONS: dict[str, Any] = {}
"""Keyword arguments of ``torch.compile`` for ``compile = true`` (tests choose a cheap backend)."""


class TwoPhaseTrainer:
    supports_distributed = True
    """Under torchrun it shards batches, validation and the feature cache; rank 0 writes (see
    docs/distributed.md)."""

    def __init__(self, options: TwoPhaseOptions, context: BuildContext):
        self.options = options
        self.phases = [
            # from scratch: every backbone layer trains, BatchNorm in training mode
            Phase(0, "initial", "Initial Model", options.initial, None if options.from_scratch else 0, True),
            Phase(
                1,
                "finetuned",
                "Fine-Tuned Model",
                options.finetuned,
                options.finetuned.unfreeze_last,
                options.finetuned.finetune_batchnorm,
            ),
        ]

    @property
    def precision(self) -> str:
        """The training precision setting (the engine records what it resolved to)."""
        return self.options.precision

    def fit(self, model: Classifier, data: TrainingData, context: BuildContext) -> list[TrainedModel]:
        for name in ("train", "val"):
            if len(getattr(data, name)) == 0:  # type: ignore[arg-type]
                raise DataError(f"the {name} split is empty; add images or change the split fractions")
        main = distributed.is_main()
        if main:
            start_hints(model.backbone, self.options, context.logger)  # type: ignore[arg-type]
        weights = class_weights(self.options.class_weights, data)
        if weights is not None and main:
            context.logger.info(
                "class weights of the training loss: "
                + ", ".join(
                    f"{name} {w:.3g}" for name, w in zip(data.class_names, weights.tolist(), strict=True)
                )
            )
        with self._run_path(context) as run_path:
            model.to(context.device)
            if resolve_channels_last(self.options.channels_last, context.device):
                model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            trained: list[TrainedModel] = []
            start_from: Path | None = None
            for phase in self.phases:
                if phase.options.epochs == 0:
                    context.logger.info(f"{phase.key}: skipped (epochs = 0)")
                    continue
                job = PhaseJob(phase, self.options, data, context, run_path, weights)
                start_from, history = self._run_phase(job, model, start_from)
                state = checkpoints.model_state(model)  # the chosen weights, loaded by _run_phase
                trained.append(TrainedModel(phase.key, phase.title, state, history))
                release_memory()  # this phase's caches and activations: the next phase allocates others
            return trained

    @contextlib.contextmanager
    def _run_path(self, context: BuildContext) -> Iterator[Path]:
        if context.run_dir is not None:
            yield Path(context.run_dir.path)
            return
        with tempfile.TemporaryDirectory(prefix="ctframe-two-phase-") as folder:  # validating / ad hoc use
            yield Path(folder)

    def _folded(self, model: Classifier) -> contextlib.AbstractContextManager[int]:
        """Frozen inference-mode BatchNorm folded into its convolution while a phase trains (the whole
        backbone in phase 1, the frozen prefix in phase 2); checkpoints still get unfolded weights."""
        if not self.options.fold_batchnorm:
            return contextlib.nullcontext(0)
        return folded_batchnorm(model.backbone, frozen_only=True)

    def _run_phase(
        self, job: PhaseJob, model: Classifier, start_from: Path | None
    ) -> tuple[Path, list[dict[str, Any]]]:
        """Train one phase (or continue it on resume); return the checkpoint to use and the history."""
        state = self._start(job, model, start_from)
        if not state.finished(job.phase.options.epochs):
            # the ExitStack deletes this phase's cache files when it ends, however it ends
            with self._folded(model) as folded, contextlib.ExitStack() as cleanup:
                if folded:
                    job.context.logger.info(
                        f"{job.phase.key}: {folded} frozen BatchNorm layers folded into their convs"
                    )
                runner = build_runner(job, model, cleanup)
                if self.options.compile:
                    # one graph per input shape (the last batch is smaller); mode changes recompile once
                    runner = replace(runner, forward=torch.compile(runner.forward, **COMPILE_OPTIONS))
                _train_epochs(job, state, runner)

        def chosen_weights() -> tuple[Path, dict[str, Any]]:
            best = job.phase.options.restore_best and job.best_path.exists()
            chosen = job.best_path if best else job.last_path
            return chosen, checkpoints.load(chosen)

        # checkpoints are rank 0's: it reads them and the other processes receive what it read
        chosen, checkpoint = distributed.from_main(chosen_weights)
        checkpoints.restore(model, checkpoint, chosen)
        return chosen, state.history

    def _start(self, job: PhaseJob, model: Classifier, start_from: Path | None) -> PhaseState:
        """The phase's state before its next epoch: a fresh optimiser and early stopping over the phase's
        trainable layers, filled from ``<key>_last.pt`` on resume; otherwise the model starts from the
        previous phase's chosen checkpoint (``start_from``), or as built."""
        phase, options = job.phase, job.phase.options
        set_trainable_layers(model.backbone, phase.unfreeze_last)  # type: ignore[arg-type]
        for parameter in model.head.parameters():
            parameter.requires_grad_(True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(trainable, options, self.options)
        stopper = EarlyStopping(options.patience, options.min_delta)
        last = job.last_path
        if job.context.resume and distributed.from_main(last.exists):
            checkpoint = distributed.from_main(lambda: checkpoints.load(last))
            state = PhaseState.from_checkpoint(
                checkpoint, last, model=model, optimizer=optimizer, stopper=stopper
            )
            job.context.logger.info(f"{phase.key}: resuming after epoch {state.epoch + 1}/{options.epochs}")
            return state
        if start_from is not None:
            previous = distributed.from_main(lambda: checkpoints.load(start_from))
            checkpoints.restore(model, previous, start_from)
        return PhaseState(phase.key, model, optimizer, stopper)


def _train_epochs(job: PhaseJob, state: PhaseState, runner: EpochRunner) -> None:
    """The phase's remaining epochs, until the last or early stopping; each ends with its checkpoints."""
    key, logger = job.phase.key, job.context.logger
    main = distributed.is_main()  # only rank 0 shows progress and writes files
    tensorboard = TensorBoardLog(
        TENSORBOARD_PHASE.path(job.run_path, key), job.options.tensorboard and main, logger
    )
    try:
        with EpochProgress(job.options.progress and main) as progress:
            while not state.finished(job.phase.options.epochs):
                improved = _epoch(job, state, runner, progress)
                tensorboard.log(state.history[-1], state.epoch)
                logger.info(_summary(job.phase, state.history[-1], improved))
        if state.stopper.stopped:
            logger.info(
                f"{key}: early stopping after epoch {state.epoch + 1}; "
                f"best epoch {state.stopper.best_epoch + 1} (val_loss {state.stopper.best:.4f})"
            )
    except KeyboardInterrupt:
        logger.warning(
            f"{key}: interrupted in epoch {state.epoch + 2}; every completed epoch is saved in "
            f"{job.last_path.parent} and `ctframe run --resume` continues from there"
        )
        raise
    finally:
        tensorboard.close()


def _epoch(job: PhaseJob, state: PhaseState, runner: EpochRunner, progress: EpochProgress) -> bool:
    """Train and validate the next epoch, record it and write its checkpoints; True when it is the best."""
    phase, epoch = job.phase, state.epoch + 1
    started = time.perf_counter()
    progress.start(f"{phase.key} {epoch + 1}/{phase.options.epochs}", runner.batches_per_epoch())
    seed = checkpoints.epoch_seed(job.context.seed, phase.index, epoch)
    lr = learning_rate(phase.options, epoch)  # a function of the epoch: a resume recomputes it
    set_learning_rate(state.optimizer, lr)
    result, val = runner.run(state, seed, progress.advance)
    progress.stop()
    improved = state.stopper.update(val.loss, epoch)  # val.loss is over all processes
    distributed.check_agree((improved, state.stopper.stopped), f"stopping after epoch {epoch + 1}")
    state.completed(epoch, _record(phase, epoch, lr, result, val, started))
    rank_rng = distributed.gather(checkpoints.capture_rng()) if distributed.active() else ()
    if distributed.is_main():
        # best before last: a kill in between redoes this epoch and rewrites the same best
        if improved:
            checkpoints.save(job.best_path, state.weights(val.loss), run_dir=job.run_path)
        checkpoints.save(job.last_path, state.to_checkpoint(rank_rng), run_dir=job.run_path)
    return improved


def _record(
    phase: Phase, epoch: int, lr: float, result: EpochResult, val: Evaluation, started: float
) -> dict[str, Any]:
    return {
        "epoch": epoch + 1,
        "phase": phase.key,
        "train_loss": result.loss,
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "lr": lr,
        "images_per_s": result.images_per_s,
        "seconds": time.perf_counter() - started,
    }


def _summary(phase: Phase, record: dict[str, Any], improved: bool) -> str:
    return (
        f"{phase.key} epoch {record['epoch']}/{phase.options.epochs}: loss {record['train_loss']:.4f}  "
        f"val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.4f}  "
        f"{record['images_per_s']:.1f} img/s  {record['seconds']:.1f} s" + ("  [best]" if improved else "")
    )


def build_two_phase(options: TwoPhaseOptions, context: BuildContext) -> TwoPhaseTrainer:
    return TwoPhaseTrainer(options, context)
