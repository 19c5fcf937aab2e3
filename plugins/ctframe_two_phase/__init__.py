"""ctframe built-in plugin: the study's two-phase trainer (``component = "two_phase"``).

Registration imports only the options; torch and the training code load when a run builds the trainer.
"""

from ctframe import hookimpl
from ctframe_two_phase.options import FinetuneOptions, PhaseOptions, TwoPhaseOptions

__all__ = ["FinetuneOptions", "PhaseOptions", "TwoPhaseOptions", "build_two_phase"]


def build_two_phase(options, context):
    """The trainer factory (see :class:`ctframe_two_phase.trainer.TwoPhaseTrainer`)."""
    from ctframe_two_phase.trainer import build_two_phase as build

    return build(options, context)


@hookimpl
def ctframe_register_trainers(register):
    register(
        "two_phase",
        build_two_phase,
        TwoPhaseOptions,
        "Keras-style transfer learning: train the head on a frozen backbone, then fine-tune its last layers",
    )
