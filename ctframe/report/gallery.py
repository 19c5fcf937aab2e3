"""The gallery: test images of each model by confusion-matrix cell, as small embedded thumbnails.

Images are read as the model read them: through the run's model file (``models/<key>.json``) and its
dataset component's reader, from the ``file`` column of ``predictions_<key>.csv``. When an explainer
component is installed (such as the gradcam plugin's), each thumbnail gets its Grad-CAM overlay for the
predicted class from :func:`ctframe.runtime.explaining.cam_maps`; models that share their leading
backbone segments (the two-phase trainer's) run them once per image (:mod:`ctframe.runtime.prefix_memo`).
Without an explainer, or when it fails, the thumbnails stay and a one-line note says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctframe.base.contracts import Kind
from ctframe.base.errors import MissingExtraError
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.registry.plugins import Registry
from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.report.tiles import error_line, overlay_thumbnails, read_image, thumbnail, tile
from ctframe.runtime.explaining import blend, cam_maps, make_explainer
from ctframe.runtime.inference import file_reader, same_architecture
from ctframe.runtime.loading import load_model
from ctframe.runtime.prefix_memo import sharing_classifiers
from ctframe.storage.layout import EXTERNAL, MODELS
from ctframe.storage.modelfile import find_model, read_model_info

PER_CELL = 8


@dataclass(frozen=True)
class Cell:
    code: str
    title: str
    true_positive: bool
    """Whether the images of this cell truly belong to the positive class."""
    predicted_positive: bool


CELLS = (
    Cell("TP", "True positives", True, True),
    Cell("FP", "False positives", False, True),
    Cell("FN", "False negatives", True, False),
    Cell("TN", "True negatives", False, False),
)


def select(
    rows: Sequence[dict[str, str]], positive: str, per_cell: int = PER_CELL
) -> dict[str, tuple[int, list]]:
    """Cell code -> (images in the cell, up to ``per_cell`` rows, most confident first).

    One-vs-rest on the positive class, so it also holds for more than two classes. Confidence is
    the positive class's probability: highest first where the model said positive, lowest first
    where it said negative; the most confident errors lead the FP and FN cells.
    """
    column = f"{PROBABILITY_PREFIX}{positive}"
    chosen: dict[str, tuple[int, list]] = {}
    for cell in CELLS:
        members = [
            row
            for row in rows
            if (row.get("true_class") == positive) == cell.true_positive
            and (row.get("predicted_class") == positive) == cell.predicted_positive
        ]

        def confidence(row: dict[str, str], cell: Cell = cell) -> float:
            score = number(row.get(column))
            if not math.isfinite(score):
                return -math.inf  # unscored rows go last
            return score if cell.predicted_positive else -score

        members.sort(key=confidence, reverse=True)
        chosen[cell.code] = (len(members), members[:per_cell])
    return chosen


def _model_file(run: RunArtifacts, key: str) -> Path:
    """The model JSON of ``key``: in the run, or, for an external evaluation, in the run above it."""
    folder = run.path
    if not MODELS.path(folder).is_dir() and folder.parent.name == EXTERNAL.name:
        folder = folder.parent.parent
    return find_model(folder, key)


def overlay_function(registry: Registry) -> tuple[Callable[..., Any] | None, str | None]:
    """``draw(classifier, images, targets)`` when an explainer is installed, else ``None`` and the note
    the gallery shows instead."""
    if not registry.names(Kind.EXPLAINER):
        return (
            None,
            "Grad-CAM overlays left out: no explainer component is installed (e.g. the gradcam plugin).",
        )
    try:
        make_explainer(registry=registry)  # an optional package missing is a note here, not a failure
    except MissingExtraError as error:
        return None, f"Grad-CAM overlays left out: {error}"

    def draw(classifier: Any, images: list, targets: list[int]) -> list[np.ndarray]:
        batch = torch.stack(images).to(torch.uint8)
        # batches of 8: as fast as 16 on a CPU, ~0.16 GB less at 224 px (the report can be a run's peak)
        maps = cam_maps(classifier, batch, targets, registry=registry, batch_size=8)
        result = [blend(image, cam) for image, cam in zip(batch, maps, strict=False)]
        if len(result) != len(images):
            raise ValueError(f"overlays() returned {len(result)} images for {len(images)}")
        return result

    return draw, None


def model_tools(
    run: RunArtifacts, key: str, registry: Registry, draw: Callable[..., Any] | None
) -> tuple[Any, Any, list[str]]:
    """Model ``key``'s file reader (for thumbnails) and loaded model (for overlays, only when ``draw``),
    each ``None`` when it cannot be had, and notes saying why."""
    notes = []
    reader = loaded = None
    try:
        model_path = _model_file(run, key)
    except Exception as error:  # no model files (a scored CSV, an older run): counts and names only
        model_path = None
        notes.append(html.paragraph(f"No thumbnails: {' '.join(str(error).split())}", "muted"))
    if model_path is not None:
        try:
            reader = file_reader(read_model_info(model_path), registry)
        except Exception as error:  # a damaged model file, a dataset plugin that is gone
            notes.append(html.paragraph(f"No thumbnails: {' '.join(str(error).split())}", "missing"))
    if reader is not None and draw is not None:
        try:
            loaded = load_model(model_path, registry)
        except Exception as error:  # the backbone's plugin is gone: thumbnails without overlays
            notes.append(html.paragraph(f"Grad-CAM overlays left out: {error_line(error)}", "missing"))
    return reader, loaded, notes


def _model_gallery(
    run: RunArtifacts,
    key: str,
    rows: list[dict[str, str]],
    tools: tuple[Any, Any, list[str]],
    draw: Callable[..., Any] | None,
) -> str:
    """One model's cells; ``tools``: its reader, classifier (``None`` without overlays) and notes."""
    positive = str(run.positive_class)
    names = list(run.class_names or [])
    others = [name for name in names if name != positive]
    negative = others[0] if len(others) == 1 else f"other than {positive}"
    cells = select(rows, positive)
    reader, classifier, notes = tools
    chosen = [row for cell in CELLS for row in cells[cell.code][1]]
    read = [read_image(reader, row) if reader else (None, "no model file") for row in chosen]
    images = [image for image, _ in read]
    overlays: list[bytes | None] = [None] * len(chosen)
    if draw is not None and classifier is not None:
        overlays, problem = overlay_thumbnails(draw, classifier, chosen, images, names)
        notes += [html.paragraph(problem, "missing")] if problem else []
    tiles = [
        tile(row, positive, thumbnail(image) if image is not None else None, overlay, why or "")
        for row, (image, why), overlay in zip(chosen, read, overlays, strict=True)
    ]
    summary = [
        [
            f"{cell.title} ({cell.code})",
            positive if cell.true_positive else negative,
            positive if cell.predicted_positive else negative,
            cells[cell.code][0],
            len(cells[cell.code][1]),
        ]
        for cell in CELLS
    ]
    parts = [html.table(["Cell", "True class", "Predicted", "Images", "Shown"], summary), *notes]
    for cell in CELLS:
        total, shown = cells[cell.code]
        parts.append(
            f'<h4 id="gallery-{escape(key)}-{cell.code}">{cell.title} ({cell.code}): {total} image'
            f"{'s' if total != 1 else ''}</h4>"
        )
        if not shown:
            parts.append(html.paragraph("None in the test split.", "muted"))
            continue
        order = "highest" if cell.predicted_positive else "lowest"
        parts.append(html.paragraph(f"{len(shown)} shown, {order} p({positive}) first.", "muted"))
        parts.append(f'<div class="gallery">{"".join(tiles[: len(shown)])}</div>')
        tiles = tiles[len(shown) :]
    return "\n".join(parts)


def gallery(run: RunArtifacts, registry: Registry) -> str:
    if not run.predictions:
        return html.missing("No predictions_<model>.csv files: evaluation did not run.")
    if run.positive_class is None:
        return html.missing(
            "The positive class is unknown: metrics.json and split_summary.json are both missing."
        )
    draw, note = overlay_function(registry)
    parts = [
        html.paragraph(
            f"Up to {PER_CELL} test images per confusion-matrix cell and model, the most confident first (so "
            f"the worst errors lead the FP and FN rows), read as the model read them. Positive class: "
            f"{run.positive_class!r}; hover a thumbnail for its file."
        ),
        html.paragraph(note or "Beside each image: its Grad-CAM overlay for the predicted class.", "muted"),
    ]
    usable = {
        key: rows
        for key, rows in run.predictions.items()
        if rows and "true_class" in rows[0] and "predicted_class" in rows[0]
    }
    tools = _explaining_tools(run, list(usable), registry, draw)
    for key, rows in run.predictions.items():
        parts.append(f"<h3>{escape(run.title(key))}</h3>")
        if key not in usable:
            parts.append(
                html.missing(f"predictions_{key}.csv has no rows or no true/predicted class columns.")
            )
            continue
        parts.append(_model_gallery(run, key, rows, tools[key], draw))
    return "\n".join(parts)


def _explaining_tools(
    run: RunArtifacts, keys: list[str], registry: Registry, draw: Callable[..., Any] | None
) -> dict[str, tuple[Any, Any, list[str]]]:
    """Each model's reader, classifier for overlays and notes; models of one architecture run the
    leading backbone segments their weights share once per image."""
    tools = {key: model_tools(run, key, registry, draw) for key in keys}
    loaded = {key: found for key, (_, found, _) in tools.items() if found is not None}
    classifiers = {key: model.classifier for key, model in loaded.items()}
    if len(loaded) > 1 and same_architecture(list(loaded.values())):
        classifiers = dict(zip(loaded, sharing_classifiers(list(classifiers.values())), strict=True))
    return {key: (reader, classifiers.get(key), notes) for key, (reader, _, notes) in tools.items()}
