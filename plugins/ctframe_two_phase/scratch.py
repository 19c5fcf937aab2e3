"""Whether the backbone starts from pretrained weights, and the one-line hints at the start of ``fit``.

The backbone contract does not say where its weights came from, so BatchNorm tells: a layer that has
never seen data keeps its initial statistics (running mean 0, running variance 1), which no pretrained
network has. A backbone without BatchNorm gives no answer, and no hint.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ctframe_two_phase.options import TwoPhaseOptions


def untrained_batchnorm(backbone: nn.Module) -> bool | None:
    """True when every BatchNorm of ``backbone`` still has its initial statistics (random weights),
    False when one has others (pretrained), None without BatchNorm."""
    norms = [
        module
        for module in backbone.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None
    ]
    if not norms:
        return None
    return all(
        not torch.any(norm.running_mean).item() and bool(torch.all(norm.running_var == 1).item())  # type: ignore[arg-type]
        for norm in norms
    )


def start_hints(backbone: nn.Module, options: TwoPhaseOptions, logger: logging.Logger) -> None:
    """Warn (not fail) when phase 1 would learn a head on random features, or from_scratch would
    overwrite pretrained weights."""
    untrained = untrained_batchnorm(backbone)
    if options.from_scratch and untrained is False:
        logger.warning(
            "trainer.from_scratch = true trains every layer of a backbone that has pretrained weights (its "
            "BatchNorm statistics are not the initial ones); from_scratch = false fine-tunes it instead"
        )
    elif not options.from_scratch and untrained and options.initial.epochs > 0:
        logger.warning(
            'the backbone has random weights (backbone.weights = "none"?) and phase 1 keeps it frozen: it '
            "learns only a head on random features; set trainer.from_scratch = true to train every layer"
        )
