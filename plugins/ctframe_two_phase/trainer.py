"""The study's two-phase schedule: train the head on a frozen backbone, then fine-tune the
backbone's last layers from the best phase-1 weights. Each phase's best model is evaluated."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctframe import BuildContext, DataError, TrainedModel, TrainingData
from ctframe.api.training import (
    Classifier,
    distributed,
    folded_batchnorm,
    release_memory,
    resolve,
    resolve_channels_last,
    set_trainable_layers,
)
from ctframe_two_phase import checkpoints
from ctframe_two_phase.bank import BankSource, bank_views, build_bank, view_seed
from ctframe_two_phase.early_stopping import EarlyStopping
from ctframe_two_phase.features import backbone_is_frozen, compute_features_shared
from ctframe_two_phase.loops import (
    BatchSource,
    EpochResult,
    EpochRunner,
    Evaluation,
    Forward,
    ImageSource,
    model_forward,
)
from ctframe_two_phase.optimizer import KerasRMSprop
from ctframe_two_phase.options import PhaseOptions, TwoPhaseOptions
from ctframe_two_phase.prefix import (
    ActivationSource,
    PrefixCut,
    SuffixClassifier,
    build_activation_cache,
    frozen_prefix,
    human_size,
)
from ctframe_two_phase.progress import EpochProgress, TensorBoardLog

COMPILE_OPTIONS: dict[str, Any] = {}
"""Keyword arguments of ``torch.compile`` for ``compile = true`` (tests choose a cheap backend)."""


@dataclass(frozen=True)
class Phase:
    index: int
    key: str
    title: str
    options: PhaseOptions
    unfreeze_last: int
    update_batchnorm: bool


class TwoPhaseTrainer:
    supports_distributed = True
    """Under torchrun it shards batches, validation and the feature cache; rank 0 writes (see
    docs/distributed.md)."""

    def __init__(self, options: TwoPhaseOptions, context: BuildContext):
        self.options = options
        self.phases = [
            Phase(0, "initial", "Initial Model", options.initial, 0, True),
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
        with self._run_path(context) as run_path:
            model.to(context.device)
            if self._channels_last(context):
                model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            trained: list[TrainedModel] = []
            start_from: Path | None = None
            for phase in self.phases:
                if phase.options.epochs == 0:
                    context.logger.info(f"{phase.key}: skipped (epochs = 0)")
                    continue
                chosen, history = self._run_phase(phase, model, data, context, run_path, start_from)
                state = checkpoints.model_state(model)  # the chosen weights, loaded by _run_phase
                trained.append(TrainedModel(phase.key, phase.title, state, history))
                start_from = chosen
                release_memory()  # this phase's caches and activations: the next phase allocates others
            return trained

    @contextlib.contextmanager
    def _run_path(self, context: BuildContext) -> Iterator[Path]:
        if context.run_dir is not None:
            yield Path(context.run_dir.path)
            return
        with tempfile.TemporaryDirectory(prefix="ctframe-two-phase-") as folder:  # validating / ad hoc use
            yield Path(folder)

    def _images(self, dataset, data: TrainingData, context: BuildContext, augment=None) -> ImageSource:
        workers = self.options.num_workers if self.options.num_workers is not None else data.num_workers
        return ImageSource(dataset, context.device, workers, augment, self._channels_last(context))

    def _channels_last(self, context: BuildContext) -> bool:
        return resolve_channels_last(self.options.channels_last, context.device)

    @property
    def _eval_batch_size(self) -> int:
        # not larger by default: a no-grad forward of a bigger batch would be the run's memory peak
        return self.options.eval_batch_size or self.options.batch_size

    def _folded(self, model: Classifier) -> contextlib.AbstractContextManager[int]:
        """Frozen inference-mode BatchNorm folded into its convolution while a phase trains (the whole
        backbone in phase 1, the frozen prefix in phase 2); checkpoints still get unfolded weights."""
        if not self.options.fold_batchnorm:
            return contextlib.nullcontext(0)
        return folded_batchnorm(model.backbone, frozen_only=True)

    def _run_phase(
        self,
        phase: Phase,
        model: Classifier,
        data: TrainingData,
        context: BuildContext,
        run_path: Path,
        start_from: Path | None,
    ) -> tuple[Path, list[dict[str, Any]]]:
        """Train one phase (or continue it on resume); return the checkpoint to use and the history."""
        options, logger = phase.options, context.logger
        best_path, last_path = checkpoints.checkpoint_paths(run_path, phase.key)
        set_trainable_layers(model.backbone, phase.unfreeze_last)  # type: ignore[arg-type]
        for parameter in model.head.parameters():
            parameter.requires_grad_(True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = KerasRMSprop(
            trainable, options.lr, self.options.rho, self.options.epsilon, self.options.epsilon_inside_sqrt
        )
        stopper = EarlyStopping(options.patience, options.min_delta)
        history: list[dict[str, Any]] = []
        start_epoch = 0
        # checkpoints are rank 0's: it reads them and the other processes receive what it read
        resume = context.resume and distributed.from_main(last_path.exists)
        if resume:
            state = distributed.from_main(lambda: checkpoints.load(last_path))
            checkpoints.restore(model, state, last_path)
            optimizer.load_state_dict(state["optimizer"])
            stopper.load_state_dict(state["early_stopping"])
            history = list(state["history"])
            start_epoch = int(state["epoch"]) + 1
            checkpoints.restore_rng(self._own_rng(state))
            logger.info(f"{phase.key}: resuming after epoch {start_epoch}/{options.epochs}")
        elif start_from is not None:
            previous = distributed.from_main(lambda: checkpoints.load(start_from))
            checkpoints.restore(model, previous, start_from)
        if start_epoch < options.epochs and not stopper.stopped:
            # the ExitStack deletes this phase's cache files when it ends, however it ends
            with self._folded(model) as folded, contextlib.ExitStack() as cleanup:
                if folded:
                    logger.info(f"{phase.key}: {folded} frozen BatchNorm layers folded into their convs")
                self._train_epochs(
                    phase, model, data, context, run_path, optimizer, stopper, history, start_epoch, cleanup
                )

        def chosen_weights() -> tuple[Path, dict[str, Any]]:
            chosen = best_path if options.restore_best and best_path.exists() else last_path
            return chosen, checkpoints.load(chosen)

        chosen, state = distributed.from_main(chosen_weights)
        checkpoints.restore(model, state, chosen)
        return chosen, history

    @staticmethod
    def _own_rng(state: dict[str, Any]) -> Any:
        """This process's RNG state from a resume point (rank 0's when the number of processes changed)."""
        ranks = state.get("rank_rng") or ()
        own = distributed.active() and len(ranks) == distributed.world_size()
        return ranks[distributed.rank()] if own else state["rng"]

    def _runner(
        self,
        phase: Phase,
        model: Classifier,
        data: TrainingData,
        context: BuildContext,
        optimizer,
        run_path: Path,
        cleanup: contextlib.ExitStack,
    ) -> EpochRunner:
        """Batch sources and forward function of a phase: cached features when the backbone is frozen
        (with the augmentation bank when augmenting), cached prefix activations when only its last
        layers train and nothing is augmented, images through the whole model otherwise."""
        precision = resolve(self.options.precision, context.device).resolved
        frozen = backbone_is_frozen(model.backbone)
        train: BatchSource = self._images(data.train, data, context, data.augment)
        val: BatchSource = self._images(data.val, data, context)
        trainable: nn.Module = model.head if frozen else model
        cached = False
        views = bank_views(self.options.augmentation_bank, phase.options.epochs)
        if frozen and data.augment is None and self.options.feature_cache == "auto":
            reduce = getattr(model.head, "reduce_features", None)
            batch = self._eval_batch_size
            train, train_seconds = compute_features_shared(model.backbone, train, batch, precision, reduce)
            val, val_seconds = compute_features_shared(model.backbone, val, batch, precision, reduce)
            context.logger.info(
                f"{phase.key}: cached frozen-backbone features of {len(train)} train and "
                f"{len(val)} val images in {train_seconds + val_seconds:.1f} s"
            )
            cached = True
        elif frozen and data.augment is not None and views:
            train, val = self._bank(phase, model, context, train, val, views, precision)
            cached = True
        elif not frozen and data.augment is None and self.options.prefix_cache != "off":
            cut = frozen_prefix(model.backbone)
            if cut is not None:
                train, val = self._prefix_cache(phase, cut, context, train, val, precision, run_path)
                cleanup.callback(train.close)
                cleanup.callback(val.close)
                trainable, cached = SuffixClassifier(cut.suffix, model.head), True
        # DDP under torchrun (the module itself otherwise), wrapped again in every phase because the
        # trainable parameters change
        trained = distributed.wrap(trainable)
        forward: Forward = trained if cached else model_forward(model, frozen, trained)
        if self.options.compile:
            # one graph per input shape (the last batch is smaller); mode changes recompile once
            forward = torch.compile(forward, **COMPILE_OPTIONS)
        return EpochRunner(
            model,
            forward,
            optimizer,
            train,
            val,
            frozen,
            phase.update_batchnorm,
            self.options.batch_size,
            self._eval_batch_size,
            precision,
            context.device,
        )

    def _prefix_cache(
        self,
        phase: Phase,
        cut: PrefixCut,
        context: BuildContext,
        train: ImageSource,
        val: ImageSource,
        precision: str,
        run_path: Path,
    ) -> tuple[ActivationSource, ActivationSource]:
        """Phase 2 without augmentation: the frozen prefix's activations of train and val images."""
        folder = run_path / "cache"
        suffix = f"{distributed.rank()}.bin"  # every process computes (and maps) its own copy
        made = [
            build_activation_cache(
                cut.prefix,
                images,
                self._eval_batch_size,
                precision,
                self.options.prefix_cache,
                self.options.prefix_cache_dtype == "bf16",
                folder / f"{phase.key}-prefix-{name}.{suffix}",
            )
            for name, images in (("train", train), ("val", val))
        ]
        (train_cache, train_seconds), (val_cache, val_seconds) = made
        shape = "x".join(map(str, train_cache.activations.shape[1:]))
        where = "in memory" if train_cache.path is None else f"in {folder}"
        context.logger.info(
            f"{phase.key}: cached the frozen prefix (up to {cut.last_cached_layer}; "
            f"{len(cut.suffix)} segments train) for {len(train_cache)} train and {len(val_cache)} val "
            f"images: {shape} {str(train_cache.activations.dtype).removeprefix('torch.')}, "
            f"{human_size(train_cache.nbytes + val_cache.nbytes)} {where}, "
            f"{train_seconds + val_seconds:.1f} s"
        )
        return train_cache, val_cache

    def _bank(
        self, phase: Phase, model: Classifier, context: BuildContext, train, val, views: int, precision: str
    ) -> tuple[BankSource, BankSource]:
        """Phase 1 with augmentation and an ``augmentation_bank``: the bank of ``views`` augmented views
        per training image and the (never augmented) validation features, one view each."""
        reduce = getattr(model.head, "reduce_features", None)
        batch, backbone = self._eval_batch_size, model.backbone
        seeds = lambda k: view_seed(context.seed, phase.index, k)  # noqa: E731 - one pass's seed
        bank, bank_seconds = build_bank(backbone, train, views, batch, precision, seeds, reduce)
        val, val_seconds = build_bank(backbone, val, 1, batch, precision, lambda k: 0, reduce)
        context.logger.info(
            f"{phase.key}: augmentation bank of {views} views x {len(bank)} train images "
            f"({bank.nbytes / 2**20:.0f} MiB) and {len(val)} val features in "
            f"{bank_seconds + val_seconds:.1f} s"
        )
        return bank, val

    def _train_epochs(
        self,
        phase: Phase,
        model: Classifier,
        data: TrainingData,
        context: BuildContext,
        run_path: Path,
        optimizer: torch.optim.Optimizer,
        stopper: EarlyStopping,
        history: list[dict[str, Any]],
        start_epoch: int,
        cleanup: contextlib.ExitStack,
    ) -> None:
        options, logger = phase.options, context.logger
        best_path, last_path = checkpoints.checkpoint_paths(run_path, phase.key)
        runner = self._runner(phase, model, data, context, optimizer, run_path, cleanup)
        frozen = checkpoints.FrozenPart.of(model)  # what this phase's checkpoints leave out
        main = distributed.is_main()  # only rank 0 shows progress and writes files
        tensorboard = TensorBoardLog(
            run_path / "tensorboard" / phase.key, self.options.tensorboard and main, logger
        )
        epoch = start_epoch
        try:
            with EpochProgress(self.options.progress and main) as progress:
                for epoch in range(start_epoch, options.epochs):
                    started = time.perf_counter()
                    progress.start(f"{phase.key} {epoch + 1}/{options.epochs}", runner.batches_per_epoch())
                    result, val = runner.run(
                        checkpoints.epoch_seed(context.seed, phase.index, epoch), progress.advance
                    )
                    progress.stop()
                    improved = stopper.update(val.loss, epoch)  # val.loss is over all processes
                    distributed.check_agree((improved, stopper.stopped), f"stopping after epoch {epoch + 1}")
                    history.append(self._record(phase, epoch, result, val, started))
                    rank_rng = distributed.gather(checkpoints.capture_rng()) if distributed.active() else ()
                    # best before last: a kill in between redoes this epoch and rewrites the same best
                    if improved and main:
                        checkpoints.save_best(best_path, model, phase.key, epoch, val.loss, frozen)
                    if main:
                        checkpoints.save_last(
                            last_path,
                            model=model,
                            optimizer=optimizer,
                            phase=phase.key,
                            epoch=epoch,
                            early_stopping=stopper.state_dict(),
                            history=history,
                            rank_rng=rank_rng,
                            frozen=frozen,
                        )
                    tensorboard.log(history[-1], epoch)
                    logger.info(self._summary(phase, history[-1], improved))
                    if stopper.stopped:  # here, not at the top: `epoch` is then the last epoch run
                        break
            if stopper.stopped:
                logger.info(
                    f"{phase.key}: early stopping after epoch {epoch + 1}; "
                    f"best epoch {stopper.best_epoch + 1} (val_loss {stopper.best:.4f})"
                )
        except KeyboardInterrupt:
            logger.warning(
                f"{phase.key}: interrupted in epoch {epoch + 1}; every completed epoch is saved in "
                f"{last_path.parent} and `ctframe run --resume` continues from there"
            )
            raise
        finally:
            tensorboard.close()

    @staticmethod
    def _record(
        phase: Phase, epoch: int, result: EpochResult, val: Evaluation, started: float
    ) -> dict[str, Any]:
        return {
            "epoch": epoch + 1,
            "phase": phase.key,
            "train_loss": result.loss,
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "lr": phase.options.lr,
            "images_per_s": result.images_per_s,
            "seconds": time.perf_counter() - started,
        }

    @staticmethod
    def _summary(phase: Phase, record: dict[str, Any], improved: bool) -> str:
        return (
            f"{phase.key} epoch {record['epoch']}/{phase.options.epochs}: loss {record['train_loss']:.4f}  "
            f"val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.4f}  "
            f"{record['images_per_s']:.1f} img/s  {record['seconds']:.1f} s"
            + ("  [best]" if improved else "")
        )


def build_two_phase(options: TwoPhaseOptions, context: BuildContext) -> TwoPhaseTrainer:
    return TwoPhaseTrainer(options, context)
