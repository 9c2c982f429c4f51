"""Image decoding and preprocessing: the one function training and serving both use.

Training (training/data/images.py) and the gateway call `load_model_input` on the raw file bytes, so
a file gives byte-identical arrays in both (tests/training/test_data.py). Normalisation is not done
here: the model takes uint8 pixels and normalises inside its graph.

Not keras-image-helper (the seeds' preprocessor): it stretches to a square with nearest-neighbour
resizing, forces RGB, normalises outside the graph and downloads without a timeout or address
checks; tests/contract/test_seed_preprocessing.py measures the skew it would cause.

The entry: `sniff` looks at the bytes once and `_decode` hands them to one reader, pictures.py
(Pillow) or dicom.py (one 8-bit slice per frame, windowed from Hounsfield units); neither comes
back here. Every slice then goes through the same `to_model_input`.
"""

from __future__ import annotations

import enum

import numpy as np
from PIL import Image, ImageOps

from ct_contract import dicom, pictures
from ct_contract.dicom_values import Window
from ct_contract.slices import (
    DEFAULT_MAX_PIXELS,
    DecodeBudget,
    DecodeBudgetError,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    Shrink,
    SliceMeta,
    UnsupportedTransferSyntaxError,
)

__all__ = [  # the decoding API training, the gateway and the local tools import from here
    "DEFAULT_MAX_PIXELS",
    "DecodeBudget",
    "DecodeBudgetError",
    "DecodedSlice",
    "ImageDecodeError",
    "ImageTooLargeError",
    "MultiFrameError",
    "Shrink",
    "SliceMeta",
    "UnsupportedTransferSyntaxError",
    "Window",
    "decode_single",
    "decode_slices",
    "fit_to_input",
    "load_model_input",
    "sniff",
    "to_model_input",
]

_MAGIC_OFFSET = 128
# A dataset without preamble starts with a group 0x0002 (file meta) or 0x0008 element, little or
# big endian. No picture format the gateway takes starts with these bytes (tests/contract/
# test_decoding_entry.py asks Pillow), so such bytes never need Pillow's opinion.
_BARE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


class Kind(enum.Enum):
    """What the first bytes say a file is; the reader it goes to refuses it if they lied."""

    PICTURE = "picture"  # anything else, empty included: Pillow takes it or refuses it
    DICOM_FILE = "DICOM file"  # "DICM" after the 128-byte preamble
    DICOM_DATASET = "DICOM dataset"  # no preamble, starts like a dataset


def sniff(data: bytes) -> Kind:
    """Picture or DICOM, by content (never by name): the only place that decides."""
    if data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == b"DICM":
        return Kind.DICOM_FILE
    if data[:2] in _BARE_STARTS:
        return Kind.DICOM_DATASET
    return Kind.PICTURE


def _decode(
    data: bytes,
    max_pixels: int,
    window: Window | None,
    max_frames: int | None,
    budget: DecodeBudget | None,
    shrink: Shrink | None,
) -> list[DecodedSlice]:
    """The one dispatch: sniff once, then one reader decodes. `max_frames` None: one image."""
    kind = sniff(data)
    if kind is Kind.PICTURE:
        return [pictures.read_picture(data, max_pixels, budget, shrink)]
    preamble = kind is Kind.DICOM_FILE
    return dicom.read_slices(data, preamble, max_pixels, window, max_frames, budget, shrink)


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
    return _decode(data, max_pixels, window, max_frames, budget or DecodeBudget(), shrink)


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
    (single,) = _decode(data, max_pixels, window, None, budget or DecodeBudget(), shrink)
    return single


def load_model_input(
    data: bytes,
    size: int,
    channels: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: Window | None = None,
) -> np.ndarray:
    """Bytes of a picture or single-frame DICOM object -> the uint8 array the model takes.
    Raises ImageDecodeError (a multi-frame DICOM object belongs to :predict_series). Pictures are
    decoded with no memory budget (the path training has always used), DICOM with the default."""
    (single,) = _decode(data, max_pixels, window, None, None, None)
    return to_model_input(single.image, size, channels)


def fit_to_input(img: Image.Image, size: int, channels: int) -> Image.Image:
    """The model's input as an image: 8-bit L (`channels` 1) or RGB (3), letterboxed to a `size`
    px square (aspect kept, black padding)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    img = pictures.to_8bit(img).convert("L" if channels == 1 else "RGB")
    return ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0)


def to_model_input(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Letterbox to a `size` px square (aspect kept, black padding): uint8 [size, size, ch]."""
    arr = np.asarray(fit_to_input(img, size, channels), dtype=np.uint8)
    if channels == 1:
        arr = arr[:, :, np.newaxis]
    return np.ascontiguousarray(arr)
