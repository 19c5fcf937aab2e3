"""The "Example slices" report section: a few test slices per class as the model saw them.

Slices are chosen from ``volumes_manifest.csv`` (split ``test``) and read again through the dataset's
reader, built from the run's recipe (every path there is absolute), so they carry the run's windows
and image size. The pixels are not stored in the run: when the scans or the pseudonym key are not
available where the report is built, the section says so in one line.
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Sequence
from pathlib import Path

from ctframe import BuildContext, CtframeError
from ctframe.api import RegisterSection
from ctframe.api.report import ReportContext, RunArtifacts, html
from ctframe_ct_volumes.run_files import VOLUMES_MANIFEST

COMPONENT = "ct_volumes"
KEY, TITLE, ORDER = "ct_example_slices", "Example slices", 810  # right after the core's data split (800)
PER_CLASS = 4
LARGEST = 128
"""Thumbnails keep the model's input size up to this side, so a report stays small."""


def is_ct_volumes_run(run: RunArtifacts) -> bool:
    return run.component("dataset") == COMPONENT or VOLUMES_MANIFEST.path(run.path).is_file()


def choose(rows: Sequence[dict[str, str]], per_class: int = PER_CLASS) -> list[tuple[str, str]]:
    """(sample id, class) of up to ``per_class`` test slices per class: the middle slice of each series
    first (one per series, series in name order), then further slices; the same rows each time."""
    chosen: list[tuple[str, str]] = []
    by_class: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        if row.get("split") == "test" and row.get("sample_id"):
            series = by_class.setdefault(row.get("label", ""), {})
            series.setdefault(row.get("series", ""), []).append(row["sample_id"])
    for label in sorted(by_class):
        groups = [sorted(ids) for _, ids in sorted(by_class[label].items())]
        first = [ids.pop(len(ids) // 2) for ids in groups]
        ordered = first + [sample for ids in groups for sample in ids]
        chosen += [(sample, label) for sample in ordered[:per_class]]
    return chosen


def _options(run: RunArtifacts) -> object:
    from ctframe_ct_volumes.options import CtVolumesOptions

    table = dict(tomllib.loads(run.recipe or "").get("dataset", {}))
    table.pop("component", None)
    return CtVolumesOptions.model_validate(table, context={"base_dir": run.path})


def _png(image: object) -> bytes:
    import numpy as np  # here, not above: the hook imports this module for every report
    from PIL import Image

    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 3 and array.shape[0] == 3:
        array = array.transpose(1, 2, 0)
    picture = Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    if max(picture.size) > LARGEST:
        picture.thumbnail((LARGEST, LARGEST), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)  # no text chunks: pixels only
    return buffer.getvalue()


def example_slices_section(report: ReportContext) -> str:
    run = report.run
    if not is_ct_volumes_run(run):
        return ""
    wanted = choose(run.read_csv(VOLUMES_MANIFEST) or [])
    if not wanted:
        return html.missing("no test slices listed in volumes_manifest.csv")
    from ctframe_ct_volumes.reader import build_reader

    try:
        options = _options(run)
        reader = build_reader(options, BuildContext(seed=0, device="cpu", recipe_dir=run.path))
        read = reader.read([Path(sample) for sample, _ in wanted], on_bad_image="skip")
    except (CtframeError, ValueError, tomllib.TOMLDecodeError) as error:
        return html.missing(f"example slices not shown: {' '.join(str(error).split())}")
    images = {read.images[i][2]: read.images[i][0] for i in range(len(read.images))}
    if not images:
        return html.missing(
            "example slices not shown: the test slices are not found under the recipe's dataset root here "
            "(the scans are missing, or the pseudonym key differs from the run's)"
        )
    size = getattr(options, "image_size", "?")
    parts = [html.paragraph(f"Up to {PER_CLASS} test slices per class as the model saw them ({size} px).")]
    for sample, label in wanted:
        if sample in images:
            parts.append(html.image(_png(images[sample]), f"{label}: {sample}", f"{sample} ({label})"))
    if len(images) < len(wanted):
        parts.append(html.missing(f"{len(wanted) - len(images)} chosen slices could not be read here"))
    return "\n".join(parts)


def register_sections(register: RegisterSection) -> None:
    register(KEY, TITLE, example_slices_section, order=ORDER)
