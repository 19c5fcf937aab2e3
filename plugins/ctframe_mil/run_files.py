"""The files mil writes into a run directory (the core's are in ``ctframe.api``)."""

from ctframe.api import RunFile

TOP_IMAGES = RunFile(
    "mil_top_images.csv",
    "file",
    "mil",
    "ctframe_mil.attention",
    "csv",
    "per validation group, the images the MIL pooling weighed most (sample ids, probability, weight)",
)

RUN_FILES: tuple[RunFile, ...] = (TOP_IMAGES,)
