"""Decode any supported image into the one canonical form: RGB uint8, resized with antialiasing.

Everything downstream sees only this form, so neither colour mode nor file format can reach a model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ctframe_folder_split.files import sniff_format

NOT_AN_IMAGE = "not an image (unknown content; PNG, JPEG, BMP, TIFF, GIF, WEBP are read)"


class BadImage(Exception):
    """A file that cannot be used as an image; the message is the reason, a few words long."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mode: str
    width: int
    height: int


def open_image(data: bytes, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """Open (not yet decode) an image from bytes, rejecting empty, unknown and oversized files."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    kind = sniff_format(data[:16])
    if kind is None:
        raise BadImage(NOT_AN_IMAGE)
    try:
        image = Image.open(io.BytesIO(data), formats=None)
    except Image.DecompressionBombError:
        raise BadImage(f"decompression bomb (more than {max_pixels} pixels)") from None
    except Image.UnidentifiedImageError:
        raise BadImage(f"corrupt or truncated {kind} file (unreadable header)") from None
    except Exception as error:  # any decoder complaint means the header is broken
        raise BadImage(f"corrupt {kind} header ({_short(error)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"decompression bomb ({width}x{height} pixels > max_image_pixels {max_pixels})")
    if width < 1 or height < 1:
        raise BadImage(f"image has no pixels ({width}x{height})")
    return image, ImageInfo(image.format or kind, image.mode, width, height)


def verify_image(data: bytes, max_pixels: int) -> None:
    """Raise :class:`BadImage` for what :func:`decode_canonical` would refuse, without its work where
    a cheaper test exists: a PNG's header and chunk checksums (a truncated or damaged file fails them;
    nothing is inflated), a JPEG decoded at 1/8 scale (which still reads all its compressed data),
    and the rarer formats decoded in full."""
    image, info = open_image(data, max_pixels)
    try:
        if info.format == "PNG":
            image.verify()
        else:
            if info.format == "JPEG":
                image.draft(image.mode, (max(1, info.width // 8), max(1, info.height // 8)))
            image.load()
    except Exception as error:
        raise BadImage(f"corrupt or truncated {info.format} data ({_short(error)})") from None


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:80]


def _scale_wide_integers(array: np.ndarray) -> np.ndarray:
    """16-bit (or wider) greyscale to 8 bits: full 16-bit range maps to 0..255, rounding to nearest."""
    array = array.astype(np.int64)
    top = int(array.max()) if array.size else 0
    bottom = int(array.min()) if array.size else 0
    if bottom >= 0 and top <= 255:
        return array.astype(np.uint8)
    if bottom >= 0 and top <= 65535:
        return ((array * 255 + 32767) // 65535).astype(np.uint8)
    span = max(top - bottom, 1)  # unusual 32-bit data: stretch what is there
    return ((array - bottom) * 255 // span).astype(np.uint8)


def _scale_floats(array: np.ndarray) -> np.ndarray:
    array = np.nan_to_num(array.astype(np.float64))
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return np.round(array * 255.0).astype(np.uint8)
    span = (high - low) or 1.0
    return np.round((array - low) * 255.0 / span).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Canonical RGB: transparency composited over black, greyscale and palettes expanded."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return Image.fromarray(_scale_wide_integers(np.asarray(image)), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_scale_floats(np.asarray(image)), "L").convert("RGB")
    if mode == "RGB":
        return image
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    alpha_low, _ = rgba.getchannel("A").getextrema()
    if alpha_low == 255:  # fully opaque: compositing would change nothing
        return rgba.convert("RGB")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, rgba).convert("RGB")


def decode_canonical(data: bytes, image_size: int, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    """Bytes of an image file -> ``(3, image_size, image_size)`` uint8 RGB array and the file's facts."""
    image, info = open_image(data, max_pixels)
    try:
        if info.format == "JPEG":
            # Let libjpeg decode at a reduced scale that still leaves >= 2x the target resolution.
            image.draft("RGB", (image_size * 2, image_size * 2))
        image.load()
        if info.format in ("JPEG", "TIFF", "WEBP"):  # formats whose EXIF orientation cameras set
            image = ImageOps.exif_transpose(image)
        array = np.array(to_rgb(image), dtype=np.uint8)  # writable: torch shares it without a warning
    except BadImage:
        raise
    except Exception as error:
        raise BadImage(f"corrupt or truncated {info.format} data ({_short(error)})") from None
    return resize_square(array, image_size), info


def resize_square(array: np.ndarray, image_size: int) -> np.ndarray:
    """``H x W x 3`` uint8 -> ``3 x S x S`` uint8, bilinear with antialiasing (torch's uint8 kernel, which
    is about 3x faster than Pillow's here); the aspect ratio is not kept, as in the study."""
    import torch
    from torchvision.transforms.v2 import functional

    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if tensor.shape[1:] != (image_size, image_size):
        tensor = functional.resize(
            tensor,
            [image_size, image_size],
            interpolation=functional.InterpolationMode.BILINEAR,
            antialias=True,
        )
    return np.ascontiguousarray(tensor.numpy())
