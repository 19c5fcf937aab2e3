"""Canonical decoding: every mode and format becomes the same RGB uint8 image at image_size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ctframe_folder_split.decode import BadImage, decode_canonical
from ctframe_folder_split.files import sniff_format
from PIL import Image

SIZE = 16
PIXELS = 10_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def grey_ramp() -> np.ndarray:
    return np.tile(np.arange(0, 256, 8, dtype=np.uint8), (24, 1))  # 24 x 32, values 0..248


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [(f, m) for f in ("PNG", "TIFF") for m in ("RGB", "RGBA", "L", "LA", "P", "1")]
    + [("BMP", "RGB"), ("BMP", "L"), ("BMP", "P"), ("GIF", "P")],
)
def test_lossless_formats_and_modes_give_the_same_canonical_image(fmt, mode):
    grey = grey_ramp() if mode != "1" else (grey_ramp() >= 128).astype(np.uint8) * 255
    reference, _ = decode_canonical(encode(Image.fromarray(grey, "L").convert("RGB"), "PNG"), SIZE, PIXELS)
    source = Image.fromarray(grey, "L").convert(mode)  # opaque alpha where the mode has one
    image, info = decode_canonical(encode(source, fmt), SIZE, PIXELS)
    assert image.shape == (3, SIZE, SIZE) and image.dtype == np.uint8
    assert info.format == fmt
    # The same picture must not look different because of how it was stored.
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1


def test_jpeg_inside_a_png_name_is_read_by_content(tmp_path):
    data = encode(Image.fromarray(grey_ramp(), "L").convert("RGB"), "JPEG", quality=95)
    assert sniff_format(data[:16]) == "JPEG"
    image, info = decode_canonical(data, SIZE, PIXELS)
    assert info.format == "JPEG" and image.shape == (3, SIZE, SIZE)


def test_cmyk_jpeg_becomes_rgb():
    image, info = decode_canonical(
        encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), SIZE, PIXELS
    )
    assert info.mode == "CMYK"
    red, green, blue = (int(image[c].mean()) for c in range(3))
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_greyscale_is_scaled_not_clipped(fmt):
    values = np.array([[0, 257 * 64, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0).repeat(4, axis=1)
    image, info = decode_canonical(encode(Image.fromarray(values), fmt), 16, PIXELS)
    assert info.mode.startswith("I")
    row = image[0, 0, ::4]
    assert row.tolist() == [0, 64, 128, 255]
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()


def test_transparency_is_composited_over_black():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 128  # half transparent white-ish -> about 100 over black
    image, _ = decode_canonical(encode(Image.fromarray(rgba, "RGBA"), "PNG"), 8, PIXELS)
    assert abs(int(image.mean()) - 100) <= 1
    palette = Image.fromarray(np.full((8, 8), 200, np.uint8), "L").convert("P")
    palette.info["transparency"] = palette.getpixel((0, 0))
    image, _ = decode_canonical(encode(palette, "PNG", transparency=palette.getpixel((0, 0))), 8, PIXELS)
    assert image.max() == 0  # fully transparent -> black, consistently with RGBA


def test_resize_is_antialiased_and_stretches_to_a_square():
    checker = (np.indices((240, 320)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image, info = decode_canonical(encode(Image.fromarray(checker, "L"), "PNG"), SIZE, PIXELS)
    assert (info.width, info.height) == (320, 240) and image.shape == (3, SIZE, SIZE)
    # Without antialiasing a 1-pixel checkerboard would alias to pure black or white.
    assert image.min() >= 110 and image.max() <= 145


def test_bad_bytes_are_reported_with_a_reason():
    good = encode(Image.fromarray(grey_ramp(), "L"), "PNG")
    cases = {
        b"": "empty file",
        b"hello, I am a text file\n": "not an image",
        good[: len(good) // 2]: "corrupt or truncated",
        good[:40]: "corrupt or truncated",
    }
    for data, reason in cases.items():
        with pytest.raises(BadImage, match=reason):
            decode_canonical(data, SIZE, PIXELS)
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_canonical(good, SIZE, max_pixels=100)
