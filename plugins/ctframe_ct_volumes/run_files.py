"""The files ct_volumes writes into a run directory (the core's are in ``ctframe.api``)."""

from ctframe.api import RunFile

VOLUMES_MANIFEST = RunFile(
    "volumes_manifest.csv",
    "file",
    "ct_volumes",
    "ctframe_ct_volumes.manifest",
    "csv",
    "per slice: split, label, patient / study / series pseudonyms and the series' technical fields; "
    "a resume refuses data that no longer matches it",
    readers=("ctframe_ct_volumes.manifest",),
)

RUN_FILES: tuple[RunFile, ...] = (VOLUMES_MANIFEST,)
