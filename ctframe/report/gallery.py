"""The gallery: test images of each model by confusion-matrix cell, as small embedded thumbnails.

Images are read as the model read them: through the run's model file (``models/<key>.json``) and its
dataset component's reader, from the ``file`` column of ``predictions_<key>.csv``. When an explainer
component is installed (such as the gradcam plugin's), each thumbnail gets its Grad-CAM overlay for the
predicted class from :func:`ctframe.runtime.explaining.overlays`. Without one, or when it fails, the
thumbnails stay and a one-line note says why.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ctframe.base.contracts import Kind
from ctframe.base.errors import MissingExtraError
from ctframe.base.filenames import unescape_name
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.registry.plugins import Registry
from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.runtime.explaining import make_explainer, overlays
from ctframe.runtime.inference import file_reader
from ctframe.runtime.loading import load_model
from ctframe.runtime.unreadable import Guarded, Unreadable
from ctframe.storage.layout import EXTERNAL, MODELS
from ctframe.storage.modelfile import find_model, read_model_info

PER_CELL = 8
THUMBNAIL = 96
"""Longest side of a thumbnail in pixels: about 3 KB each as JPEG, so a report stays small."""
JPEG_QUALITY = 80


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


def thumbnail(image: Any, size: int = THUMBNAIL) -> bytes:
    """A uint8 ``(3, H, W)`` tensor or ``(H, W, 3)`` array as a JPEG whose longest side is ``size``."""
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    picture = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).convert("RGB")
    scale = size / max(picture.size)
    picture = picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.LANCZOS,
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def _img(jpeg: bytes, alt: str, css: str) -> str:
    data = base64.b64encode(jpeg).decode("ascii")
    return f'<img class="{css}" alt="{escape(alt)}" src="data:image/jpeg;base64,{data}">'


def overlay_function(registry: Registry) -> tuple[Callable[..., Any] | None, str | None]:
    """``draw(loaded, images, targets)`` when an explainer is installed, else ``None`` and the note the
    gallery shows instead."""
    if not registry.names(Kind.EXPLAINER):
        return (
            None,
            "Grad-CAM overlays left out: no explainer component is installed (e.g. the gradcam plugin).",
        )
    try:
        make_explainer(registry=registry)  # an optional package missing is a note here, not a failure
    except MissingExtraError as error:
        return None, f"Grad-CAM overlays left out: {error}"

    def draw(loaded: Any, images: list, targets: list[int]) -> list[np.ndarray]:
        result = list(overlays(loaded, torch.stack(images).to(torch.uint8), targets, registry=registry))
        if len(result) != len(images):
            raise ValueError(f"overlays() returned {len(result)} images for {len(images)}")
        return result

    return draw, None


def _line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def read_image(reader: Any, row: dict[str, str]) -> tuple[Any, str | None]:
    """One test image as the model read it, or ``None`` and why not."""
    if not row.get("file"):
        return None, "no file recorded"
    try:
        read = reader.read([Path(unescape_name(row["file"]))], on_bad_image="skip")
        if len(read.images) == 0:
            return None, read.skipped[0][1] if read.skipped else "not readable"
        item = Guarded(read.images)[0]  # damage that only decoding finds: its reason, not a whole error
        return (None, item.reason) if isinstance(item, Unreadable) else (item[0], None)
    except Exception as error:  # a moved or unreadable file costs one thumbnail
        return None, " ".join(str(error).split())


def tile(row: dict[str, str], positive: str, thumb: bytes | None, overlay: bytes | None, why: str) -> str:
    file = row.get("file") or row.get("sample_id") or "?"
    name = file.replace("\\", "/").rsplit("/", 1)[-1]
    score = number(row.get(f"{PROBABILITY_PREFIX}{positive}"))
    images = (
        _img(thumb, f"test image {name}", "thumb") if thumb else f'<span class="nothumb">{escape(why)}</span>'
    )
    if overlay:
        images += _img(overlay, f"Grad-CAM of {name} for {row.get('predicted_class')}", "thumb")
    caption = f"p({escape(positive)}) {score:.3f}<br>{escape(name)}" if math.isfinite(score) else escape(name)
    return (
        f'<figure class="tile" title="{escape(file)}"><div>{images}</div>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def overlay_thumbnails(
    draw: Callable[..., Any], loaded: Any, chosen: list[dict[str, str]], images: list, names: list[str]
) -> tuple[list[bytes | None], str | None]:
    """Overlay thumbnails of every readable image of one model in one call, and a note if it failed."""
    overlays: list[bytes | None] = [None] * len(chosen)
    readable = [i for i, image in enumerate(images) if image is not None]
    if not readable:
        return overlays, None
    try:
        targets = [names.index(chosen[i]["predicted_class"]) for i in readable]
        for i, picture in zip(readable, draw(loaded, [images[i] for i in readable], targets), strict=True):
            overlays[i] = thumbnail(picture)
    except Exception as error:  # overlays are extra: the thumbnails stay
        return [None] * len(chosen), f"Grad-CAM overlays failed: {_line(error)}"
    return overlays, None


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
            notes.append(html.paragraph(f"Grad-CAM overlays left out: {_line(error)}", "missing"))
    return reader, loaded, notes


def _model_gallery(
    run: RunArtifacts,
    key: str,
    rows: list[dict[str, str]],
    registry: Registry,
    draw: Callable[..., Any] | None,
) -> str:
    positive = str(run.positive_class)
    names = list(run.class_names or [])
    others = [name for name in names if name != positive]
    negative = others[0] if len(others) == 1 else f"other than {positive}"
    cells = select(rows, positive)
    reader, loaded, notes = model_tools(run, key, registry, draw)
    chosen = [row for cell in CELLS for row in cells[cell.code][1]]
    read = [read_image(reader, row) if reader else (None, "no model file") for row in chosen]
    images = [image for image, _ in read]
    overlays: list[bytes | None] = [None] * len(chosen)
    if draw is not None and loaded is not None:
        overlays, problem = overlay_thumbnails(draw, loaded, chosen, images, names)
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
    for key, rows in run.predictions.items():
        parts.append(f"<h3>{escape(run.title(key))}</h3>")
        if not rows or "true_class" not in rows[0] or "predicted_class" not in rows[0]:
            parts.append(
                html.missing(f"predictions_{key}.csv has no rows or no true/predicted class columns.")
            )
            continue
        parts.append(_model_gallery(run, key, rows, registry, draw))
    return "\n".join(parts)
