"""ctframe built-in plugin: multiple-instance learning from group labels (``component = "mil"``).

Registration imports only the options; torch and the training code load when a run builds the trainer.
"""

from ctframe import hookimpl
from ctframe_mil.options import POOLINGS, MilOptions

__all__ = ["POOLINGS", "MilOptions", "build_mil"]


def build_mil(options, context):
    """The trainer factory (see :class:`ctframe_mil.trainer.MilTrainer`)."""
    from ctframe_mil.trainer import MilTrainer

    return MilTrainer(options)


@hookimpl
def ctframe_register_trainers(register):
    register(
        "mil",
        build_mil,
        MilOptions,
        "Multiple-instance learning: train the head on bags (all images of a patient) from group labels only",
    )
