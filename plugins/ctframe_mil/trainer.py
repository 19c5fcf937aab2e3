"""The mil trainer: the recipe's head learns from group labels only, on bags of frozen-backbone features.

The model stays a per-image classifier (backbone + head), so predict, evaluate, export and explain work
unchanged; a group's answer is the core's ``[evaluation] aggregate`` of its images' probabilities. Only
the objective differs from slice training: each bag (all training images of one group) is pooled into
one probability by ``pooling`` and scored against the group's label (docs/mil.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ctframe import BuildContext, DataError, RecipeError, TrainedModel, TrainingData
from ctframe.api.training import Classifier, set_trainable_layers
from ctframe_mil.attention import plural, top_image_rows, top_image_summary, write_top_images
from ctframe_mil.bags import Bags, image_features, make_bags
from ctframe_mil.loop import BagEvaluation, evaluate, recalibrate_batchnorm, train_epoch
from ctframe_mil.options import MilOptions
from ctframe_mil.run_files import TOP_IMAGES

KEY, TITLE = "mil", "MIL Model"


def check_data(data: TrainingData) -> None:
    """Two classes and groups, in one line each, before any backbone pass."""
    if len(data.class_names) != 2:
        raise RecipeError(
            f"the mil trainer learns two classes (a bag is positive or not); the recipe has "
            f"{len(data.class_names)}: use two classes or another trainer"
        )
    if not data.groups:
        raise DataError(
            "the mil trainer learns from group labels, and this dataset gives no groups: use a dataset that "
            "groups images by patient or series (ct_volumes does; folder_split with group_by)"
        )
    for name in ("train", "val"):
        if len(getattr(data, name)) == 0:  # type: ignore[arg-type]
            raise DataError(f"the {name} split is empty; add images or change the split fractions")


class MilTrainer:
    supports_distributed = False  # every process would train on every bag

    def __init__(self, options: MilOptions):
        self.options = options

    @property
    def precision(self) -> str:
        """The feature pass's precision setting (the engine records what it resolved to)."""
        return self.options.precision

    def fit(self, model: Classifier, data: TrainingData, context: BuildContext) -> list[TrainedModel]:
        check_data(data)
        options, logger, unit = self.options, context.logger, data.group_unit
        model.to(context.device)
        set_trainable_layers(model.backbone, 0)  # type: ignore[arg-type]
        for parameter in model.head.parameters():
            parameter.requires_grad_(True)
        train, val = self._bags(model, data, context)
        if len({float(label) for label in train.labels.tolist()}) < 2:
            raise DataError(f"the train split's {plural(unit)} are all of one class; a bag model needs both")
        if context.resume:
            logger.info("mil: keeps no resume point; it trains the head again on the cached features")
        torch.manual_seed(context.seed)  # dropout in the head
        history, best = self._train(model, train, val, data.positive_index, context)
        if best is not None and options.restore_best:
            model.head.load_state_dict(best)
        final = evaluate(model.head, val, options, data.positive_index)
        self._report(val, final, data, context)
        state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
        return [TrainedModel(KEY, TITLE, state, history)]

    def _bags(self, model: Classifier, data: TrainingData, context: BuildContext) -> tuple[Bags, Bags]:
        options, unit = self.options, data.group_unit
        if data.augment is not None:
            context.logger.info(
                "mil: trains on cached features of unaugmented images; augmentation is unused"
            )
        reduce = getattr(model.head, "reduce_features", None)
        workers = data.num_workers if options.num_workers is None else options.num_workers
        made, seconds = [], 0.0
        for split, dataset in (("train", data.train), ("val", data.val)):
            features, labels, ids, took = image_features(
                model.backbone,
                dataset,
                reduce,
                device=context.device,
                batch_size=options.batch_size,
                precision=options.precision,
                num_workers=workers,
            )
            made.append(make_bags(features, labels, ids, data.groups, data.positive_index, split, unit))
            seconds += took
        train, val = made
        context.logger.info(
            f"mil: cached frozen-backbone features of {len(train.sample_ids)} train images in {len(train)} "
            f"{plural(unit)} and {len(val.sample_ids)} val images in {len(val)} {plural(unit)} "
            f"in {seconds:.1f} s"
        )
        return train, val

    def _train(
        self, model: Classifier, train: Bags, val: Bags, positive: int, context: BuildContext
    ) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor] | None]:
        """Epochs until the last or early stopping; the history and the best epoch's head weights."""
        options, logger, head = self.options, context.logger, model.head
        optimizer = torch.optim.Adam(head.parameters(), lr=options.lr)
        generator = torch.Generator().manual_seed(context.seed)
        history: list[dict[str, Any]] = []
        best, best_loss, best_epoch, wait = None, float("inf"), 0, 0
        for epoch in range(1, options.epochs + 1):
            started = time.perf_counter()
            pooling = "mean" if epoch <= options.warmup_epochs else options.pooling
            result = train_epoch(head, train, optimizer, options, positive, generator, pooling)
            if options.recalibrate_batchnorm:
                recalibrate_batchnorm(head, train.features)
            checked = evaluate(head, val, options, positive)
            improved = checked.loss < best_loss - options.min_delta
            if improved:
                best_loss, best_epoch, wait = checked.loss, epoch, 0
                best = {name: tensor.detach().clone() for name, tensor in head.state_dict().items()}
            else:
                wait += 1
            history.append(
                _record(
                    epoch, result.loss, checked, result.images / max(result.seconds, 1e-9), started, options
                )
            )
            logger.info(
                f"mil epoch {epoch}/{options.epochs}: bag loss {result.loss:.4f}  val bag loss "
                f"{checked.loss:.4f}  val bag acc {checked.accuracy:.4f}" + ("  [best]" if improved else "")
            )
            if wait >= options.patience:
                logger.info(
                    f"mil: early stopping after epoch {epoch}; best epoch {best_epoch} "
                    f"(val bag loss {best_loss:.4f})"
                )
                break
        return history, best

    def _report(self, val: Bags, final: BagEvaluation, data: TrainingData, context: BuildContext) -> None:
        """The top images of each validation group: a run file and one log line."""
        unit, positive = data.group_unit, data.positive_index
        classes = (data.class_names[0], data.class_names[1])
        rows = top_image_rows(val, final, self.options, classes, positive)
        summary = top_image_summary(val, final, unit)
        if context.run_dir is None:
            context.logger.info(f"mil: {summary}")
            return
        path = write_top_images(TOP_IMAGES.path(Path(context.run_dir.path)), rows)
        context.logger.info(f"mil: {summary}; the images the pooling weighed most per {unit}: {path.name}")


def _record(
    epoch: int, loss: float, checked: BagEvaluation, images_per_s: float, started: float, options: MilOptions
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "phase": KEY,
        "train_loss": loss,
        "val_loss": checked.loss,
        "val_accuracy": checked.accuracy,
        "lr": options.lr,
        "images_per_s": images_per_s,
        "seconds": time.perf_counter() - started,
    }
