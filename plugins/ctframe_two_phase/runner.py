"""What a phase's epochs run through (:class:`EpochRunner`), and choosing it: cached backbone features,
the augmentation bank, cached prefix activations or images through the whole model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ctframe.api.training import Classifier, distributed, release_memory
from ctframe_two_phase.activation_checkpointing import checkpoint_suffix
from ctframe_two_phase.bank import BankSource, bank_views, build_bank, view_seed
from ctframe_two_phase.checkpoints import seed_everything
from ctframe_two_phase.features import backbone_is_frozen, compute_features_shared
from ctframe_two_phase.forwards import frozen_pass, model_forward
from ctframe_two_phase.loops import (
    BatchSource,
    EpochResult,
    Evaluation,
    Forward,
    ImageSource,
    epoch_batches,
    evaluate,
    rank_batches,
    set_train_mode,
    train_one_epoch,
)
from ctframe_two_phase.phase import PhaseJob, PhaseState
from ctframe_two_phase.prefix import (
    ActivationSource,
    PrefixCut,
    SuffixClassifier,
    build_activation_cache,
    frozen_prefix,
    human_size,
)
from ctframe_two_phase.prefix_bank import prefix_bank_sources
from ctframe_two_phase.run_files import CACHE


@dataclass(frozen=True)
class EpochRunner:
    """What every epoch of one phase shares; ``run`` is one epoch: train, then validate."""

    job: PhaseJob
    forward: Forward
    """Inputs of ``train`` and ``val`` to logits, through the trainable part's DDP wrapper under torchrun."""
    train: BatchSource
    val: BatchSource
    backbone_frozen: bool
    val_forward: Forward | None = None
    """``val``'s inputs to logits when they are not ``train``'s kind (validation cached, training live)."""

    def run(
        self, state: PhaseState, seed: int, on_batch: Callable[[int, float], None] | None = None
    ) -> tuple[EpochResult, Evaluation]:
        """One epoch of ``state``'s model and optimiser. Seeds everything from ``seed`` first, so an epoch
        repeats exactly when a run resumes.

        The batch order comes from ``seed`` on every process; dropout and augmentation from each
        process's own seed (``distributed.rank_seed``, which is ``seed`` in one process).
        """
        job, model = self.job, state.model
        own_seed = distributed.rank_seed(seed)
        seed_everything(own_seed)
        order = epoch_batches(len(self.train), job.options.batch_size, torch.Generator().manual_seed(seed))
        parts, scales = rank_batches(order)
        set_train_mode(model, self.backbone_frozen, job.phase.update_batchnorm)  # type: ignore[arg-type]
        penalty = model.head.penalty  # type: ignore[union-attr]
        result = train_one_epoch(
            self.forward,
            penalty,
            state.optimizer,
            self.train,
            parts,
            own_seed,
            job.precision,
            job.context.device,
            on_batch=on_batch or (lambda images, loss: None),
            scales=scales,
            class_weights=job.class_weights,
        )
        distributed.share_buffers(model)  # rank 0's BatchNorm statistics: the model it saves
        model.eval()
        validation = evaluate(
            self.val_forward or self.forward,
            penalty,
            self.val,
            job.eval_batch_size,
            job.precision,
            job.context.device,
        )
        return result, validation

    def batches_per_epoch(self) -> int:
        return len(rank_batches(epoch_batches(len(self.train), self.job.options.batch_size, None))[0])


def build_runner(job: PhaseJob, model: Classifier, cleanup: contextlib.ExitStack) -> EpochRunner:
    """Batch sources and forward function of a phase: cached features when the backbone is frozen
    (with the augmentation bank when augmenting), cached prefix activations when only its last
    layers train and nothing is augmented (the prefix bank when augmenting and asked for), images
    through the whole model otherwise; activation checkpointing of the trainable segments as set.
    ``cleanup`` closes (and deletes) an on-disk cache and ends checkpointing when the phase ends."""
    data, options, logger = job.data, job.options, job.context.logger
    frozen = backbone_is_frozen(model.backbone)
    train: BatchSource = job.images(data.train, data.augment)
    val: BatchSource = job.images(data.val)
    trainable: nn.Module = model.head if frozen else model
    cached = False
    views = bank_views(options.augmentation_bank, job.phase.options.epochs)
    if frozen and data.augment is None and options.feature_cache == "auto":
        reduce = getattr(model.head, "reduce_features", None)
        batch, precision = job.eval_batch_size, job.precision
        train, train_seconds = compute_features_shared(model.backbone, train, batch, precision, reduce)
        val, val_seconds = compute_features_shared(model.backbone, val, batch, precision, reduce)
        logger.info(
            f"{job.phase.key}: cached frozen-backbone features of {len(train)} train and "
            f"{len(val)} val images in {train_seconds + val_seconds:.1f} s"
        )
        cached = True
    elif frozen and data.augment is not None and views:
        train, val = _bank(job, model, train, val, views)
        cached = True
    elif not frozen and options.prefix_cache != "off":
        # without augmentation the prefix cache; with it, the prefix bank when one is asked for
        cut = frozen_prefix(model.backbone)
        prefix_views = 0 if options.prefix_bank == "off" else int(options.prefix_bank)
        if cut is not None and (data.augment is None or prefix_views):
            if data.augment is None:
                train, val = _prefix_cache(job, cut, train, val)
            else:
                train, val = prefix_bank_sources(job, cut, train, val, prefix_views)
            cleanup.callback(train.close)
            cleanup.callback(val.close)
            trainable, cached = SuffixClassifier(cut.suffix, model.head), True
    live_prefix = None  # phase 2 on live images: the frozen prefix without a graph, then what trains
    if not frozen and not cached and (cut := frozen_prefix(model.backbone)) is not None:
        live_prefix = nn.Sequential(*(segment.module for segment in cut.prefix))
        trainable = SuffixClassifier(cut.suffix, model.head)
    val_forward = None
    if not cached:
        val, val_forward = _cached_validation(job, model, val, cleanup)
    # the passes above ran at the evaluation batch size: their freed blocks fit training's badly (the
    # fp32 study run's phase 2 peaked 0.1-0.2 GB higher with them kept)
    release_memory()
    if not frozen:  # the probe of "auto" runs the model itself, not its DDP wrapper
        probe = trainable if cached else _forward(model, frozen, live_prefix, trainable)
        checkpoint_suffix(job, model, probe, train, cleanup)
    # DDP under torchrun (the module itself otherwise), wrapped again in every phase because the
    # trainable parameters change
    trained = distributed.wrap(trainable)
    forward: Forward = trained if cached else _forward(model, frozen, live_prefix, trained)
    return EpochRunner(job, forward, train, val, frozen, val_forward)


def _forward(model: Classifier, frozen: bool, live_prefix: nn.Module | None, trained: nn.Module) -> Forward:
    """Images to logits through ``trained``: after the frozen prefix run in chunks, or the whole model."""
    if live_prefix is None:
        return model_forward(model, frozen, trained)
    return lambda images: trained(frozen_pass(live_prefix, images))


def _cached_validation(
    job: PhaseJob, model: Classifier, val: ImageSource, cleanup: contextlib.ExitStack
) -> tuple[BatchSource, Forward | None]:
    """Training augments and runs live, but validation never augments: what its frozen part computes is
    the same every epoch, so it runs once (frozen backbone: features for the head; frozen prefix: its
    activations for the suffix). The caches' own settings decide; ``val`` as it is when they are off."""
    options, logger = job.options, job.context.logger
    if backbone_is_frozen(model.backbone):
        if options.feature_cache == "off":
            return val, None
        reduce = getattr(model.head, "reduce_features", None)
        features, seconds = compute_features_shared(
            model.backbone, val, job.eval_batch_size, job.precision, reduce
        )
        logger.info(f"{job.phase.key}: validation features of {len(features)} images, once: {seconds:.1f} s")
        return features, model.head  # validation needs no DDP wrapper: no gradients to share
    cut = frozen_prefix(model.backbone)
    if cut is None or options.prefix_cache == "off":
        return val, None
    activations, seconds = _prefix_activations(job, cut, "val", val)
    cleanup.callback(activations.close)
    logger.info(
        f"{job.phase.key}: validation through the frozen prefix (up to {cut.last_cached_layer}) once: "
        f"{len(activations)} images, {human_size(activations.nbytes)}, {seconds:.1f} s"
    )
    return activations, SuffixClassifier(cut.suffix, model.head)


def _prefix_cache(
    job: PhaseJob, cut: PrefixCut, train: ImageSource, val: ImageSource
) -> tuple[ActivationSource, ActivationSource]:
    """Phase 2 without augmentation: the frozen prefix's activations of train and val images."""
    folder = CACHE.path(job.run_path)
    (train_cache, train_seconds), (val_cache, val_seconds) = (
        _prefix_activations(job, cut, name, images) for name, images in (("train", train), ("val", val))
    )
    shape = "x".join(map(str, train_cache.activations.shape[1:]))
    where = "in memory" if train_cache.path is None else f"in {folder}"
    job.context.logger.info(
        f"{job.phase.key}: cached the frozen prefix (up to {cut.last_cached_layer}; "
        f"{len(cut.suffix)} segments train) for {len(train_cache)} train and {len(val_cache)} val "
        f"images: {shape} {str(train_cache.activations.dtype).removeprefix('torch.')}, "
        f"{human_size(train_cache.nbytes + val_cache.nbytes)} {where}, "
        f"{train_seconds + val_seconds:.1f} s"
    )
    return train_cache, val_cache


def _prefix_activations(
    job: PhaseJob, cut: PrefixCut, name: str, images: ImageSource
) -> tuple[ActivationSource, float]:
    """The frozen prefix's activations of ``images`` where and how ``prefix_cache`` says, and seconds."""
    suffix = f"{distributed.rank()}.bin"  # every process computes (and maps) its own copy
    return build_activation_cache(
        cut.prefix,
        images,
        job.eval_batch_size,
        job.precision,
        job.options.prefix_cache,
        job.options.prefix_cache_dtype == "bf16",
        CACHE.path(job.run_path) / f"{job.phase.key}-prefix-{name}.{suffix}",
    )


def _bank(
    job: PhaseJob, model: Classifier, train: ImageSource, val: ImageSource, views: int
) -> tuple[BankSource, BankSource]:
    """Phase 1 with augmentation and an ``augmentation_bank``: the bank of ``views`` augmented views
    per training image and the (never augmented) validation features, one view each."""
    reduce = getattr(model.head, "reduce_features", None)
    batch, backbone, precision = job.eval_batch_size, model.backbone, job.precision
    seeds = lambda k: view_seed(job.context.seed, job.phase.index, k)  # noqa: E731 - one pass's seed
    bank, bank_seconds = build_bank(backbone, train, views, batch, precision, seeds, reduce)
    val, val_seconds = build_bank(backbone, val, 1, batch, precision, lambda k: 0, reduce)
    job.context.logger.info(
        f"{job.phase.key}: augmentation bank of {views} views x {len(bank)} train images "
        f"({bank.nbytes / 2**20:.0f} MiB) and {len(val)} val features in "
        f"{bank_seconds + val_seconds:.1f} s"
    )
    return bank, val
