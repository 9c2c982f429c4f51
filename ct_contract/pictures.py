"""The picture reader: PNG, JPEG, GIF, BMP, TIFF and WebP bytes -> one upright 8-bit slice.

preprocess.py hands it every file that does not look like DICOM; Pillow refuses what is not a
picture either. It never looks for DICOM: that was decided, once, before it was called.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

# Register the allowed formats' decoders now: otherwise Pillow imports all of its ~90 plugins on
# the first unrecognised file in each worker (gunicorn preloads this module, so this is shared).
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from ct_contract.slices import (
    ALLOWED_FORMATS,
    BLOCK_VALUES,
    DEFAULT_MAX_PIXELS,
    NOT_AN_IMAGE,
    PICTURE_META,
    DecodeBudget,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    Shrink,
    image_bytes,
    row_blocks,
)

_DECODER_SLACK = 4 << 20  # a decoder's own buffers (rows in flight, zlib state)
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def read_picture(
    data: bytes,
    max_pixels: int,
    budget: DecodeBudget | None,
    shrink: Shrink | None,
) -> DecodedSlice:
    """The picture as one 8-bit slice, passed through `shrink` at once. Its decoding is charged to
    `budget` and given back; only the (shrunk) slice stays charged. `budget` None charges nothing
    (load_model_input: the path training has always used)."""
    with budget.transient() if budget is not None else contextlib.nullcontext():
        img = to_8bit(decode_image(data, max_pixels, budget))
        img = shrink(img) if shrink else img
    if budget is not None:
        budget.keep(image_bytes(img), "the decoded slices")
    return DecodedSlice(img, PICTURE_META)


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, budget: DecodeBudget | None = None
) -> Image.Image:
    """Decode bytes into an upright, fully loaded PIL image (first frame of multi-frame files).
    `budget` is charged, from the header, what decoding and converting the image may hold."""
    if not data:
        raise ImageDecodeError("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError("image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} pixels, more than the {max_pixels} allowed"
                )
            if budget is not None:
                budget.charge(_picture_cost(img), f"a {width}x{height} {img.mode} image")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        # Pillow's message quotes the buffer object's repr (a memory address): say what we take.
        raise ImageDecodeError(NOT_AN_IMAGE) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError) as exc:
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    return img


def _picture_cost(img: Image.Image) -> int:
    """What decoding `img` (header read, pixels not) to 8 bits may hold at once: the image and
    one converted copy; an upright copy when it has EXIF; for 16/32-bit images an array copy,
    the 8-bit result and float64 blocks; for alpha the two RGBA images of compositing. Measured
    peaks (ct_local/bench/bombs.py) stay within it."""
    pixels, held = img.width * img.height, image_bytes(img)
    cost = 2 * held + _DECODER_SLACK
    if "exif" in img.info:  # may turn it (not getexif(): for PNG that decodes the pixels)
        cost += held
    if img.mode in _DEEP_MODES:
        cost += held + 2 * pixels + 3 * 8 * min(pixels, BLOCK_VALUES)
    if img.mode in ("RGBA", "LA", "PA", "P"):
        cost += 8 * pixels
    return cost


def to_8bit(img: Image.Image) -> Image.Image:
    """Bring 16/32-bit integer and float images to 8-bit by min-max scaling, others by convert
    (8-bit L and RGB come back as they are)."""
    if img.mode in _DEEP_MODES:
        return Image.fromarray(_min_max_uint8(np.asarray(img)), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new(
            "RGBA", rgba.size, (0, 0, 0, 255)
        )  # transparent -> black, like air in CT
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, 1


def _min_max_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max scaling to 0..255 (NaN and -inf read as darkest, +inf as brightest), a block of
    rows at a time in float64: never a float copy of the whole image."""
    blocks = list(row_blocks(values.shape[0], values[:1].size))
    lo, hi = np.inf, -np.inf
    for rows in blocks:
        block = values[rows].astype(np.float64)
        finite = block[np.isfinite(block)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    out = np.zeros(values.shape, np.uint8)
    if not hi > lo:
        return out
    for rows in blocks:
        block = values[rows].astype(np.float64)
        block = np.where(np.isposinf(block), hi, np.where(np.isfinite(block), block, lo))
        out[rows] = np.clip(np.round((block - lo) * (255.0 / (hi - lo))), 0, 255)
    return out
