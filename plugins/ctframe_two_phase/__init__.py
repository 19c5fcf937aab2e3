"""ctframe built-in plugin: the study's two-phase trainer (``component = "two_phase"``)."""

from ctframe import hookimpl
from ctframe_two_phase.options import FinetuneOptions, PhaseOptions, TwoPhaseOptions
from ctframe_two_phase.trainer import TwoPhaseTrainer, build_two_phase

__all__ = ["FinetuneOptions", "PhaseOptions", "TwoPhaseOptions", "TwoPhaseTrainer", "build_two_phase"]


@hookimpl
def ctframe_register_trainers(register):
    register(
        "two_phase",
        build_two_phase,
        TwoPhaseOptions,
        "Keras-style transfer learning: train the head on a frozen backbone, then fine-tune its last layers",
    )
