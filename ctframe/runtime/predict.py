"""The one prediction loop: every probability ctframe reports (validation, test, ``predict``,
``evaluate``) comes from here, in the evaluation precision (fp32 unless a recipe asks otherwise).

It also owns the speed settings of prediction: the memory format (the device's rule, from
:mod:`~ctframe.runtime.performance`) and BatchNorm folded into the convolutions before it
(:mod:`~ctframe.runtime.folding`, exact up to float rounding), both without changing the model's weights."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ctframe.base.training import Predictions
from ctframe.runtime.folding import folded_batchnorm
from ctframe.runtime.model import Classifier, logits_to_probabilities
from ctframe.runtime.performance import ChannelsLast, memory_format, resolve_channels_last
from ctframe.runtime.precision import autocast
from ctframe.runtime.unreadable import Guarded, OnUnreadable, Unreadable, settle


@dataclass(frozen=True)
class PredictSettings:
    """How a model is run over a dataset: on which device, in which precision, how many images per batch,
    how many worker processes read them."""

    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 64
    num_workers: int = 0


def _collate(items: Sequence[tuple[torch.Tensor, int, str] | Unreadable]) -> tuple:
    """Images, labels, ids, and the batch's unreadable items (settled in the main process, see
    :mod:`~ctframe.runtime.unreadable`); images and labels are ``None`` when no item was readable."""
    unreadable = [item for item in items if isinstance(item, Unreadable)]
    items = [item for item in items if not isinstance(item, Unreadable)]
    if not items:
        return None, None, [], unreadable
    images = torch.stack([torch.as_tensor(item[0]) for item in items])
    labels = torch.as_tensor([int(item[1]) for item in items], dtype=torch.long)
    return images, labels, [str(item[2]) for item in items], unreadable


# keyword-only settings with defaults: the library face that tests, benchmarks and docs call by keyword
def predict_dataset(
    model: Classifier,
    dataset: Dataset,
    *,
    device: str,
    precision: str = "fp32",
    batch_size: int = 64,
    num_workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
    channels_last: ChannelsLast = "auto",
    fold_batchnorm: bool = True,
    on_unreadable: OnUnreadable | None = None,
) -> Predictions:
    """Class probabilities of ``model`` (in eval mode) for every ``(image, label, id)`` item, in order.

    Items without a label carry ``-1``. The model is left in eval mode on ``device``, in the memory
    format chosen (``"auto"``: NHWC where it is faster), with its weights unchanged. An item that only
    decoding finds unreadable stops with the reader's one-line :class:`~ctframe.DataError` naming its
    file, or with ``on_unreadable`` is left out and reported to it as ``(file, reason)``.
    """
    layout = memory_format(resolve_channels_last(channels_last, device))
    # outside inference mode: parameters touched inside it become inference tensors, which anything that
    # needs gradients on this model afterwards (explain, Grad-CAM) cannot use
    model.eval().to(device).to(memory_format=layout)  # type: ignore[call-overload]
    folded = folded_batchnorm(model.backbone) if fold_batchnorm else contextlib.nullcontext()
    with folded, torch.inference_mode():
        settings = PredictSettings(device, precision, batch_size, num_workers)
        classes = len(model.class_names)
        return predict_many(
            lambda images: [model(images)], 1, classes, dataset, settings, on_batch, layout, on_unreadable
        )[0]


# the loop's eight inputs, passed positionally by its two callers (here and runtime/shared_prefix.py)
def predict_many(
    forward: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    outputs: int,
    classes: int,
    dataset: Dataset,
    settings: PredictSettings,
    on_batch: Callable[[int], None] | None,
    layout: torch.memory_format,
    on_unreadable: OnUnreadable | None = None,
) -> list[Predictions]:
    """The loop itself, inside inference mode and with the modules already prepared: ``forward`` maps a
    batch to the logits of each of ``outputs`` models, and each gets its own predictions."""
    device, precision = settings.device, settings.precision
    loader = DataLoader(
        Guarded(dataset),
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=settings.num_workers,
        collate_fn=_collate,
        pin_memory=device.startswith("cuda"),
    )
    labels: list[torch.Tensor] = []
    probabilities: list[list[torch.Tensor]] = [[] for _ in range(outputs)]
    ids: list[str] = []
    for images, batch_labels, batch_ids, unreadable in loader:
        for marker in unreadable:
            settle(marker, on_unreadable)
        if not batch_ids:
            if on_batch is not None:
                on_batch(len(unreadable))
            continue
        with autocast(precision, device):
            # the one memory-format conversion of the batch, on uint8 (a quarter of the float bytes)
            logits = forward(images.to(device, non_blocking=True).contiguous(memory_format=layout))
        for found, model_logits in zip(probabilities, logits, strict=True):
            found.append(logits_to_probabilities(model_logits).cpu())
        labels.append(batch_labels)
        ids.extend(batch_ids)
        if on_batch is not None:
            on_batch(len(batch_ids) + len(unreadable))
    if not ids:
        empty = Predictions((), np.zeros(0, dtype=np.int64), np.zeros((0, classes), dtype=np.float64))
        return [empty] * outputs
    results = []
    for found in probabilities:
        # float32 softmax rows sum to 1 only within ~1e-7; renormalised in float64 they do for scikit-learn
        matrix = torch.cat(found).to(torch.float64)
        normalised = (matrix / matrix.sum(dim=1, keepdim=True)).numpy()
        results.append(Predictions(tuple(ids), torch.cat(labels).numpy(), normalised))
    return results
