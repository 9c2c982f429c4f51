"""Image decoding and preprocessing: the one function training and serving both use.

Training (training/data/images.py) and the gateway call `load_model_input` on the raw file bytes, so
a file gives byte-identical arrays in both (tests/training/test_data.py). Normalisation is not done
here: the model takes uint8 pixels and normalises inside its graph.

Not keras-image-helper (the seeds' preprocessor): it stretches to a square with nearest-neighbour
resizing, forces RGB, normalises outside the graph and downloads without a timeout or address
checks; tests/contract/test_seed_preprocessing.py measures the skew it would cause.

DICOM objects (detected by content, dicom.py) go through `decode_slices`: one 8-bit slice
per frame, windowed from Hounsfield units, then the same `to_model_input` as pictures.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

# Register the allowed formats' decoders now: otherwise Pillow imports all of its ~90 plugins on
# the first unrecognised file in each worker (gunicorn preloads this module, so this is shared).
from PIL import (  # noqa: F401, E402
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

from ct_contract import dicom
from ct_contract.slices import (  # noqa: F401  (re-exported: the errors are part of this API)
    ALLOWED_FORMATS,
    BLOCK_VALUES,
    DEFAULT_MAX_PIXELS,
    PICTURE_META,
    DecodeBudget,
    DecodeBudgetError,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    SliceMeta,
    UnsupportedTransferSyntaxError,
    image_bytes,
    row_blocks,
)

if TYPE_CHECKING:
    from ct_contract.dicom import Window


Shrink = Callable[[Image.Image], Image.Image]


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
        raise ImageDecodeError(
            f"cannot decode image: not a picture ({', '.join(ALLOWED_FORMATS)}) or a DICOM object"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError) as exc:
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    return img


_DECODER_SLACK = 4 << 20  # a decoder's own buffers (rows in flight, zlib state)
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


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


def _to_8bit(img: Image.Image) -> Image.Image:
    """Bring 16/32-bit integer and float images to 8-bit by min-max scaling, others by convert."""
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


def fit_to_input(img: Image.Image, size: int, channels: int) -> Image.Image:
    """The model's input as an image: 8-bit L (`channels` 1) or RGB (3), letterboxed to a `size`
    px square (aspect kept, black padding)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    img = _to_8bit(img).convert("L" if channels == 1 else "RGB")
    return ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0)


def to_model_input(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Letterbox to a `size` px square (aspect kept, black padding): uint8 [size, size, ch]."""
    arr = np.asarray(fit_to_input(img, size, channels), dtype=np.uint8)
    if channels == 1:
        arr = arr[:, :, np.newaxis]
    return np.ascontiguousarray(arr)


def decode_slices(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: Window | None = None,
    max_frames: int = 1024,
    budget: DecodeBudget | None = None,
    shrink: Shrink | None = None,
) -> list[DecodedSlice]:
    """Pictures -> one slice; DICOM -> one slice per frame (`window` None: the file's own VOI
    window, else the frame's min-max). Raises ImageDecodeError (ImageTooLargeError,
    UnsupportedTransferSyntaxError, DecodeBudgetError when decoding would take more than is left
    of `budget`). `shrink` is applied to each slice as soon as it is decoded; only the shrunk
    slices stay charged to `budget`."""
    if not data:
        raise ImageDecodeError("empty image")
    budget = budget or DecodeBudget()
    with budget.transient():
        dataset = dicom.read(data, budget)
        if dataset is None:
            return [_picture(data, max_pixels, budget, shrink)]
        return dicom.decode(dataset, max_pixels, window, max_frames, budget, shrink)


def decode_single(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: Window | None = None,
    budget: DecodeBudget | None = None,
    shrink: Shrink | None = None,
) -> DecodedSlice:
    """A picture or a single-frame DICOM object; a multi-frame object raises MultiFrameError
    before any pixel is decoded (it belongs to :predict_series). `budget`, `shrink`: as in
    decode_slices."""
    budget = budget or DecodeBudget()
    with budget.transient():
        dataset = dicom.read(data, budget) if data else None
        if dataset is None:
            return _picture(data, max_pixels, budget, shrink)
        frames = dicom.frame_count(dataset)
        if frames > 1:
            raise MultiFrameError(
                f"DICOM object has {frames} frames: send multi-frame objects to :predict_series"
            )
        (single,) = dicom.decode(dataset, max_pixels, window, 1, budget, shrink)
        return single


def _picture(
    data: bytes, max_pixels: int, budget: DecodeBudget, shrink: Shrink | None
) -> DecodedSlice:
    with budget.transient():
        img = _to_8bit(decode_image(data, max_pixels, budget))
        img = shrink(img) if shrink else img
    budget.keep(image_bytes(img), "the decoded slices")
    return DecodedSlice(img, PICTURE_META)


def load_model_input(
    data: bytes,
    size: int,
    channels: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: Window | None = None,
) -> np.ndarray:
    """Bytes of a picture or single-frame DICOM object -> the uint8 array the model takes.
    Raises ImageDecodeError (a multi-frame DICOM object belongs to :predict_series)."""
    dataset = dicom.read(data) if data else None
    if dataset is None:  # pictures: exactly the path training has always used
        return to_model_input(decode_image(data, max_pixels), size, channels)
    return to_model_input(decode_single(data, max_pixels, window).image, size, channels)
