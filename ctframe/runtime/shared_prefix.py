"""Predicting several models through their shared frozen prefix once.

The models a trainer returns often share their first layers: the two-phase trainer's initial model has a
frozen backbone, and fine-tuning changes only the backbone's last blocks. Predicting each model over the
validation and test images repeats the shared part, usually most of the compute (ResNet101V2 fine-tuned
from ``conv4_block13``: about 60 % of its multiply-adds). Here the leading backbone segments
(``Backbone.segments``) whose parameters and buffers are equal, bit for bit, in every model's state run
once per batch; each model then runs its own remaining segments and head on that output.

Exactness: the shared segments hold the same weights in every model, so their output is what each model
computes by itself; the probabilities equal :func:`~ctframe.runtime.predict.predict_dataset`'s up to
float rounding (BatchNorm is folded per part rather than over the whole backbone: same pairs, since the
cuts lie between residual blocks). Memory: one copy of the non-shared part per model beyond the first
(the prefix once), no activations kept beyond a batch. :mod:`ctframe.runtime.prefix_memo` does the same
for explaining several models.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ctframe.base.training import Predictions
from ctframe.runtime.folding import folded_batchnorm
from ctframe.runtime.model import Classifier
from ctframe.runtime.performance import memory_format, resolve_channels_last
from ctframe.runtime.predict import PredictSettings, predict_many
from ctframe.runtime.unreadable import OnUnreadable


def _segments(model: Classifier) -> list:
    segments_of = getattr(model.backbone, "segments", None)
    return list(segments_of()) if callable(segments_of) else []


def segment_modules(model: Classifier) -> list[nn.Module]:
    """The modules of the backbone's chain (``Backbone.segments``), images to features; ``[]`` without one."""
    return [segment.module for segment in _segments(model)]


def shared_segments(model: Classifier, states: Sequence[Mapping[str, torch.Tensor]]) -> int:
    """How many leading backbone segments hold equal parameters and buffers in every one of ``states``
    (state dicts of ``model``'s architecture); 0 with fewer than two states or without segments."""
    segments = _segments(model)
    if len(states) < 2 or not segments:
        return 0
    names = {id(tensor): name for name, tensor in model.state_dict(keep_vars=True).items()}
    shared = 0
    for segment in segments:
        keys = [names.get(id(tensor)) for tensor in segment.module.state_dict(keep_vars=True).values()]
        if None in keys or not all(
            key in state and key in states[0] and torch.equal(states[0][key], state[key])
            for state in states[1:]
            for key in keys
        ):
            break
        shared += 1
    return shared


class _Rest(nn.Module):
    """One model's segments after the shared ones, and its head."""

    def __init__(self, segments: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        self.segments = nn.ModuleList(segments)
        self.head = head

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        for segment in self.segments:
            activations = segment(activations)
        return self.head(activations)


# keyword-only settings with defaults, as predict_dataset takes them
def predict_shared(
    model: Classifier,
    states: Sequence[Mapping[str, torch.Tensor]],
    dataset: Dataset,
    *,
    shared: int,
    device: str,
    precision: str = "fp32",
    batch_size: int = 64,
    num_workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
    on_unreadable: OnUnreadable | None = None,
) -> list[Predictions]:
    """Each state's predictions over ``dataset``, the first ``shared`` segments run once per batch
    (:func:`shared_segments`). ``model`` is left holding ``states[0]``, in eval mode on ``device``."""
    layout = memory_format(resolve_channels_last("auto", device))
    model.load_state_dict(dict(states[0]), strict=True)
    model.eval().to(device).to(memory_format=layout)  # type: ignore[call-overload]
    segments = segment_modules(model)
    prefix = nn.Sequential(*segments[:shared])
    rests = [_Rest(segments[shared:], model.head).eval()]  # the model holds states[0]
    for state in states[1:]:
        twin = copy.deepcopy(model)
        twin.load_state_dict(dict(state), strict=True)
        rests.append(_Rest(segment_modules(twin)[shared:], twin.head).eval())
        del twin.backbone  # the shared prefix of the copy is never run
    with contextlib.ExitStack() as stack:
        for part in (*prefix, *(segment for rest in rests for segment in rest.segments)):
            stack.enter_context(folded_batchnorm(part))  # per segment: fx traces modules, not lists
        stack.enter_context(torch.inference_mode())

        def forward(images: torch.Tensor) -> list[torch.Tensor]:
            activations = prefix(images)
            return [rest(activations) for rest in rests]

        settings = PredictSettings(device, precision, batch_size, num_workers)
        classes = len(model.class_names)
        return predict_many(forward, len(states), classes, dataset, settings, on_batch, layout, on_unreadable)
