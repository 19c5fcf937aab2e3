"""The files folder_split writes into a run directory (the core's are in ``ctframe.api``)."""

from ctframe.api import RunFile

_OWNER = "folder_split"

SPLIT_MANIFEST = RunFile(
    "split_manifest.csv",
    "file",
    _OWNER,
    "ctframe_folder_split.factory",
    "csv",
    "which file went to which split; a resume (or another run's reuse_manifest) repeats it exactly",
    readers=("ctframe_folder_split.factory",),
)
LEAKAGE = RunFile(
    "leakage.json",
    "file",
    _OWNER,
    "ctframe_folder_split.similarity",
    "json",
    "near-duplicate images found across the splits",
)
SPLIT = RunFile(
    "split",
    "folder",
    _OWNER,
    "ctframe_folder_split.factory",
    "",
    "the split laid out as folders (materialize, without materialize_dir)",
)

RUN_FILES: tuple[RunFile, ...] = (SPLIT_MANIFEST, LEAKAGE, SPLIT)
