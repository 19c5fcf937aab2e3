"""The files two_phase writes into a run directory (the core's are in ``ctframe.api``)."""

from ctframe.api import RunFile

_OWNER = "two_phase"
_TRAINER = "ctframe_two_phase.trainer"
_CHECKPOINTS = "ctframe_two_phase.checkpoints"

CHECKPOINTS = RunFile("checkpoints", "folder", _OWNER, _TRAINER, "", "each phase's checkpoints")
BEST_CHECKPOINT = RunFile(
    "checkpoints/{key}_best.pt",
    "file",
    _OWNER,
    _CHECKPOINTS,
    "torch",
    "phase <key>'s best epoch so far (lowest validation loss)",
    readers=(_TRAINER, "ctframe.storage.checkpoints"),
)
LAST_CHECKPOINT = RunFile(
    "checkpoints/{key}_last.pt",
    "file",
    _OWNER,
    _CHECKPOINTS,
    "torch",
    "phase <key>'s last completed epoch with optimiser, history and RNG states: the resume point",
    readers=(_TRAINER, "ctframe.storage.checkpoints"),
)
CACHE = RunFile(
    "cache",
    "folder",
    _OWNER,
    "ctframe_two_phase.runner",
    "",
    "the frozen prefix's activations on disk (prefix_cache), deleted after the phase",
)
TENSORBOARD = RunFile("tensorboard", "folder", _OWNER, _TRAINER, "", "TensorBoard event files")
TENSORBOARD_PHASE = RunFile(
    "tensorboard/{key}", "folder", _OWNER, "ctframe_two_phase.progress", "", "phase <key>'s scalars per epoch"
)

RUN_FILES: tuple[RunFile, ...] = (
    CHECKPOINTS,
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    CACHE,
    TENSORBOARD,
    TENSORBOARD_PHASE,
)
