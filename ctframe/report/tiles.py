"""The gallery's tiles: a test image as the model read it, its thumbnail and overlay, and the tile's HTML."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from ctframe.base.filenames import unescape_name
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.report.artifacts import number
from ctframe.runtime.unreadable import Guarded, Unreadable

THUMBNAIL = 96
"""Longest side of a thumbnail in pixels: about 3 KB each as JPEG, so a report stays small."""
JPEG_QUALITY = 80


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


def error_line(error: BaseException) -> str:
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
    draw: Callable[..., Any], classifier: Any, chosen: list[dict[str, str]], images: list, names: list[str]
) -> tuple[list[bytes | None], str | None]:
    """Overlay thumbnails of every readable image of one model (its classifier) in one call, and a note
    if it failed."""
    overlays: list[bytes | None] = [None] * len(chosen)
    readable = [i for i, image in enumerate(images) if image is not None]
    if not readable:
        return overlays, None
    try:
        targets = [names.index(chosen[i]["predicted_class"]) for i in readable]
        pictures = draw(classifier, [images[i] for i in readable], targets)
        for i, picture in zip(readable, pictures, strict=True):
            overlays[i] = thumbnail(picture)
    except Exception as error:  # overlays are extra: the thumbnails stay
        return [None] * len(chosen), f"Grad-CAM overlays failed: {error_line(error)}"
    return overlays, None
