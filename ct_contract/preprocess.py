"""Image decoding and preprocessing: the one function training and serving both use.

Training (training/data.py) and the gateway call `load_model_input` on the raw file bytes, so a file
gives byte-identical arrays in both (tests/training/test_training_data.py). Normalisation is not
done here: the model takes uint8 pixels and normalises inside its graph.

Not keras-image-helper (the seeds' preprocessor): it stretches to a square with nearest-neighbour
resizing, forces RGB, normalises outside the graph and downloads without a timeout or address
checks; tests/contract/test_seed_preprocessing.py measures the skew it would cause.

DICOM objects (detected by content, dicom.py) go through `decode_slices`: one 8-bit slice
per frame, windowed from Hounsfield units, then the same `to_model_input` as pictures.
"""

from __future__ import annotations

import io
import warnings
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
    DEFAULT_MAX_PIXELS,
    PICTURE_META,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    SliceMeta,
    UnsupportedTransferSyntaxError,
)

if TYPE_CHECKING:
    from ct_contract.dicom import Window


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes into an upright, fully loaded PIL image (first frame of multi-frame files)."""
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


def _to_8bit(img: Image.Image) -> Image.Image:
    """Bring 16/32-bit integer and float images to 8-bit by min-max scaling, others by convert."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(arr)
        lo = float(arr[finite].min()) if finite.any() else 0.0
        hi = float(arr[finite].max()) if finite.any() else 0.0
        arr = np.where(np.isposinf(arr), hi, np.where(finite, arr, lo))  # NaN/-inf read as darkest
        scaled = np.zeros(arr.shape, np.uint8) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new(
            "RGBA", rgba.size, (0, 0, 0, 255)
        )  # transparent -> black, like air in CT
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, 1


def to_model_input(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Letterbox to a `size` px square (aspect kept, black padding): uint8 [size, size, ch]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    img = _to_8bit(img).convert("L" if channels == 1 else "RGB")
    img = ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0)
    arr = np.asarray(img, dtype=np.uint8)
    if channels == 1:
        arr = arr[:, :, np.newaxis]
    return np.ascontiguousarray(arr)


def decode_slices(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: Window | None = None,
    max_frames: int = 1024,
) -> list[DecodedSlice]:
    """Pictures -> one slice; DICOM -> one slice per frame (`window` None: the file's own VOI
    window, else the frame's min-max). Raises ImageDecodeError (ImageTooLargeError,
    UnsupportedTransferSyntaxError)."""
    if not data:
        raise ImageDecodeError("empty image")
    dataset = dicom.read(data)
    if dataset is None:
        return [DecodedSlice(_to_8bit(decode_image(data, max_pixels)), PICTURE_META)]
    return dicom.decode(dataset, max_pixels, window, max_frames)


def decode_single(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, window: Window | None = None
) -> DecodedSlice:
    """A picture or a single-frame DICOM object; a multi-frame object raises MultiFrameError
    before any pixel is decoded (it belongs to :predict_series)."""
    dataset = dicom.read(data) if data else None
    if dataset is None:
        return DecodedSlice(_to_8bit(decode_image(data, max_pixels)), PICTURE_META)
    frames = dicom.frame_count(dataset)
    if frames > 1:
        raise MultiFrameError(
            f"DICOM object has {frames} frames: send multi-frame objects to :predict_series"
        )
    (single,) = dicom.decode(dataset, max_pixels, window, max_frames=1)
    return single


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
