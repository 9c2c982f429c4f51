"""Unit tests of the shared preprocessing: modes, orientation, letterboxing, refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ct_contract.pictures import decode_image
from ct_contract.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    load_model_input,
    to_model_input,
)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_letterbox_keeps_aspect_with_black_bars():
    wide = Image.new("L", (200, 100), 255)
    arr = to_model_input(wide, 64, 1)
    assert arr.shape == (64, 64, 1) and arr.dtype == np.uint8
    assert arr[0, 32, 0] == 0 and arr[63, 32, 0] == 0  # padding above and below
    assert arr[32, 32, 0] == 255


def test_rgb_and_grey_of_the_same_picture_agree():
    grey = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)))
    a = load_model_input(_encode(grey, "PNG"), 32, 1)
    b = load_model_input(_encode(grey.convert("RGB"), "PNG"), 32, 1)
    assert np.array_equal(a, b)


def test_sixteen_bit_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 4000, 64).astype(np.uint16), (64, 1))
    arr = load_model_input(_encode(Image.fromarray(ramp), "PNG"), 64, 1)
    assert arr[32, 0, 0] == 0 and arr[32, 63, 0] == 255


def test_exif_rotation_is_applied():
    img = Image.new("L", (40, 20), 0)
    img.paste(255, (0, 0, 20, 20))  # bright left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    upright = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert upright.size == (20, 40)


def test_transparent_pixels_become_black():
    rgba = Image.new("RGBA", (10, 10), (255, 255, 255, 0))
    arr = load_model_input(_encode(rgba, "PNG"), 10, 1)
    assert arr.max() == 0


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"],
)
def test_undecodable_or_disallowed_bytes_are_refused(data):
    with pytest.raises(ImageDecodeError):
        load_model_input(data, 32, 1)


def test_formats_outside_the_allow_list_are_refused():
    ico = _encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(ImageDecodeError):
        decode_image(ico)


def test_pixel_cap_is_checked_before_decoding():
    big = _encode(Image.new("L", (300, 300)), "PNG")
    with pytest.raises(ImageTooLargeError):
        decode_image(big, max_pixels=10_000)
