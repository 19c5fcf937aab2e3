"""What a trainer (or a backbone) needs from the core: the classifier and its layers, the loss, checkpoints
loaded weights-only, the one precision rule, speed settings and the torchrun helpers."""

from ctframe.api import distributed
from ctframe.runtime.folding import folded_batchnorm
from ctframe.runtime.model import (
    Classifier,
    classification_loss,
    freeze_inactive_batchnorm,
    logits_to_probabilities,
    set_trainable_layers,
)
from ctframe.runtime.performance import release_memory, resolve_channels_last
from ctframe.runtime.precision import autocast, resolve
from ctframe.storage.checkpoints import (
    check_state_fits,
    load_checkpoint,
    load_fitting_state,
    read_state_dict,
    save_checkpoint,
)

__all__ = [
    "Classifier",
    "autocast",
    "check_state_fits",
    "classification_loss",
    "distributed",
    "folded_batchnorm",
    "freeze_inactive_batchnorm",
    "load_checkpoint",
    "load_fitting_state",
    "logits_to_probabilities",
    "read_state_dict",
    "release_memory",
    "resolve",
    "resolve_channels_last",
    "save_checkpoint",
    "set_trainable_layers",
]
