"""The optimiser a phase's options name, and the name of an optimiser (checkpoints record it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctframe_two_phase.optimizer import KerasRMSprop
from ctframe_two_phase.options import PhaseOptions, TwoPhaseOptions

ADAMW_WEIGHT_DECAY = 0.01
"""AdamW's decay when ``weight_decay`` is unset (torch's and Keras' default)."""


def build_optimizer(
    parameters: Sequence[torch.nn.Parameter], phase: PhaseOptions, options: TwoPhaseOptions
) -> torch.optim.Optimizer:
    """``phase.optimizer`` over ``parameters`` at ``phase.lr`` (the schedule sets each epoch's rate).
    Single-tensor implementations (``foreach=False``): the same arithmetic on every device."""
    if phase.optimizer == "adamw":
        decay = ADAMW_WEIGHT_DECAY if phase.weight_decay is None else phase.weight_decay
        return torch.optim.AdamW(parameters, phase.lr, weight_decay=decay, foreach=False)
    if phase.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            phase.lr,
            momentum=phase.momentum,
            nesterov=phase.nesterov,
            weight_decay=phase.weight_decay or 0.0,
            foreach=False,
        )
    return KerasRMSprop(parameters, phase.lr, options.rho, options.epsilon, options.epsilon_inside_sqrt)


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """``"rmsprop"``, ``"adamw"`` or ``"sgd"``: what a checkpoint's optimiser state belongs to."""
    names = {KerasRMSprop: "rmsprop", torch.optim.AdamW: "adamw", torch.optim.SGD: "sgd"}
    return names.get(type(optimizer), type(optimizer).__name__.lower())
