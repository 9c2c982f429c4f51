"""The DICOM reader: header caps, transfer syntaxes, decoding frame by frame.

preprocess.py hands it the bytes it took for DICOM; dicom_dataset.py parses them, this module
checks the header and decodes the frames, and dicom_values.py turns each frame into 8-bit pixels.
Nothing from the dataset leaves except SliceMeta's fields: error messages name only the transfer
syntax, sizes and counts, never a tag value (pydicom's own warnings and log lines are silenced in
dicom_dataset.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    RLELossless,
)

from ct_contract.dicom_dataset import PIXEL_DATA, read_dataset
from ct_contract.dicom_values import (
    UID_RE,
    Window,
    colour_to_uint8,
    grey_to_uint8,
    slice_meta,
    window_to_uint8,
)
from ct_contract.slices import (
    BLOCK_VALUES,
    DecodeBudget,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    Shrink,
    UnsupportedTransferSyntaxError,
    image_bytes,
)

__all__ = ["UnsupportedTransferSyntaxError", "Window", "window_to_uint8"]

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
# Codecs that decode damaged data without failing: a frame must end in its end-of-image (JPEG-LS)
# or end-of-codestream (JPEG 2000) marker, and any warning pydicom logs while decoding (a plugin
# that failed before another succeeded, an RLE segment longer than the frame, a header that
# disagrees with the codestream) refuses the frame.
_ENDS_WITH_EOI = frozenset(JPEGLSTransferSyntaxes) | frozenset(JPEG2000TransferSyntaxes)
_STRICT = _ENDS_WITH_EOI | {RLELossless}
_EOI = b"\xff\xd9"


class _DecodeWarnings(logging.Handler):
    """pydicom's warnings while this thread decodes a frame (its logger is process-wide; the
    record list is per thread, so concurrent requests never see each other's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        seen = getattr(self.local, "seen", None)
        if seen is not None:
            seen.append(record.levelno)


_WARNINGS = _DecodeWarnings()
logging.getLogger("pydicom").addHandler(_WARNINGS)


def read_slices(
    data: bytes,
    preamble: bool,
    max_pixels: int,
    window: Window | None,
    max_frames: int | None,
    budget: DecodeBudget | None,
    shrink: Shrink | None,
) -> list[DecodedSlice]:
    """One DecodedSlice per frame of the DICOM object in `data` (`preamble`: as the sniffer found
    it, see dicom_dataset.read_dataset). `max_frames` None: exactly one image is expected, and a
    multi-frame object raises MultiFrameError before any pixel is decoded. What parsing holds is
    charged to `budget` until the frames are decoded; `window`, `shrink`: as in `_decode`."""
    budget = budget or DecodeBudget()
    with budget.transient():
        dataset = read_dataset(data, budget, preamble)
        if max_frames is None:
            if (frames := _frame_count(dataset)) > 1:
                raise MultiFrameError(
                    f"DICOM object has {frames} frames: send multi-frame objects to :predict_series"
                )
            max_frames = 1
        return _decode(dataset, max_pixels, window, max_frames, budget, shrink)


def _frame_count(dataset: Dataset) -> int:
    """NumberOfFrames (1 when absent). Raises ImageDecodeError when it is not a positive number."""
    return _header_int(dataset, "NumberOfFrames", default=1, low=1)


def _decode(
    dataset: Dataset,
    max_pixels: int,
    window: Window | None,
    max_frames: int,
    budget: DecodeBudget,
    shrink: Shrink | None,
) -> list[DecodedSlice]:
    """One DecodedSlice per frame: grayscale windowed from Hounsfield units, colour as RGB.

    Each frame's decoding memory is charged to `budget` before it is decoded and given back once
    the frame is an 8-bit image, passed through `shrink` (the model's input size) at once: only
    the shrunk images are kept (and charged) while the next frames decode."""
    rows, columns, frames = _check_header(dataset, max_pixels, max_frames)
    decoder = _decoder(dataset)
    photometric = _photometric(dataset)
    uid = _transfer_syntax(dataset)
    if uid in _ENDS_WITH_EOI:
        _check_codestream_ends(dataset, frames)
    cost = _frame_cost(dataset, rows, columns, uid)
    strict = uid in _STRICT
    decoded = _frames(decoder, dataset)
    slices = []
    for index in range(frames):
        with budget.transient():
            budget.charge(cost, f"DICOM frame {index + 1} ({columns}x{rows})")
            arr = _next_frame(decoded, strict)
            if arr is None:
                raise ImageDecodeError("DICOM pixel data holds fewer frames than its header says")
            if arr.shape[:2] != (rows, columns):
                raise ImageDecodeError("DICOM pixel data does not match its declared size")
            image = _to_image(dataset, arr, index, photometric, window)
            del arr
            image = shrink(image) if shrink else image
        budget.keep(image_bytes(image), "the decoded slices")
        slices.append(DecodedSlice(image, slice_meta(dataset, index if frames > 1 else None)))
    if _next_frame(decoded, strict) is not None:
        raise ImageDecodeError("DICOM pixel data does not hold the frames its header declares")
    return slices


def _to_image(
    dataset: Dataset, arr: np.ndarray, index: int, photometric: str, window: Window | None
) -> Image.Image:
    if photometric in _COLOUR:
        return Image.fromarray(colour_to_uint8(dataset, arr), "RGB")
    return Image.fromarray(grey_to_uint8(dataset, arr, index, photometric, window), "L")


def _frame_cost(dataset: Dataset, rows: int, columns: int, uid: UID) -> int:
    """Bytes one frame may hold at once while it decodes: the decoder's output and an array copy
    of it, a codec's 32-bit working copy (compressed syntaxes), the 8-bit frame and Pillow's image
    of it (4 bytes a pixel for colour), and windowing's float64 blocks. Measured peaks
    (ct_local/bench/bombs.py) stay at about 60% of it."""
    samples = _header_int(dataset, "SamplesPerPixel", default=1, low=1)
    stored = (_header_int(dataset, "BitsAllocated", default=16, low=1) + 7) // 8
    values = rows * columns * samples
    codec = 4 * values if uid.is_encapsulated else 0
    image = rows * columns * (4 if samples > 1 else 1)
    blocks = 3 * 8 * min(values, BLOCK_VALUES)  # float64 temporaries of one block of rows
    return 2 * stored * values + codec + values + image + blocks


def _frames(decoder: Any, dataset: Dataset) -> Iterator[np.ndarray]:
    """Decoded frames one at a time, so only one raw frame is held at once."""
    try:
        for arr, _ in decoder.iter_array(dataset, as_rgb=True):
            yield arr
    except Exception as exc:  # the plugins raise anything on corrupt data
        raise ImageDecodeError(f"cannot decode DICOM pixel data: {type(exc).__name__}") from exc


def _next_frame(frames: Iterator[np.ndarray], strict: bool) -> np.ndarray | None:
    """The next decoded frame (None after the last); with `strict`, a frame whose decoding made
    pydicom log a warning is refused (the codec recovered from damage)."""
    _WARNINGS.local.seen = []
    try:
        arr = next(frames, None)
        if strict and _WARNINGS.local.seen:
            raise ImageDecodeError("DICOM pixel data is damaged: the decoder reported errors")
        return arr
    finally:
        _WARNINGS.local.seen = None


def _check_codestream_ends(dataset: Dataset, frames: int) -> None:
    """JPEG-LS and JPEG 2000 decoders return the pixels of a cut codestream without an error:
    every frame must end in its end marker (after the fragments' 0x00 or 0xFF padding)."""
    try:
        ends = [frame.rstrip(b"\0\xff") for frame in _frame_tails(dataset, frames)]
    except Exception as exc:  # malformed encapsulation
        raise ImageDecodeError(f"cannot read DICOM pixel data: {type(exc).__name__}") from exc
    if not all(end.endswith(_EOI) for end in ends):
        raise ImageDecodeError("DICOM pixel data is damaged: a frame's codestream is cut short")


def _frame_tails(dataset: Dataset, frames: int) -> Iterator[bytes]:
    for frame in generate_frames(dataset.PixelData, number_of_frames=frames):
        yield frame[-16:]


def _header_int(dataset: Dataset, keyword: str, default: int | None = None, low: int = 0) -> int:
    try:
        value = dataset.get(keyword, default)
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        number = int(value)
    except Exception as exc:  # IS/US values can be anything in a bad file
        raise ImageDecodeError(f"DICOM {keyword} is missing or not a number") from exc
    if number < low:
        raise ImageDecodeError(f"DICOM {keyword} is {number}, less than {low}")
    return number


def _check_header(dataset: Dataset, max_pixels: int, max_frames: int) -> tuple[int, int, int]:
    """Rows, columns and frames after the caps, all checked before any pixel is decoded."""
    if PIXEL_DATA not in dataset:
        raise ImageDecodeError("DICOM object has no pixel data")
    rows = _header_int(dataset, "Rows", low=1)
    columns = _header_int(dataset, "Columns", low=1)
    samples = _header_int(dataset, "SamplesPerPixel", default=1, low=1)
    frames = _frame_count(dataset)
    if rows * columns * samples > max_pixels:
        raise ImageTooLargeError(
            f"DICOM image is {columns}x{rows}x{samples} values, more than the {max_pixels} allowed"
        )
    if frames > max_frames:
        raise ImageTooLargeError(f"DICOM object has {frames} frames, more than {max_frames}")
    if rows * columns * frames > max_pixels * max_frames:
        raise ImageTooLargeError(f"DICOM object has {rows * columns * frames} pixels, too many")
    return rows, columns, frames


def _transfer_syntax(dataset: Dataset) -> UID:
    try:
        value = dataset.file_meta.get("TransferSyntaxUID") if dataset.file_meta else None
        uid = str(value).strip("\0 ") if value is not None else ""
    except Exception as exc:
        raise ImageDecodeError("DICOM transfer syntax UID is unreadable") from exc
    if not uid:  # a dataset without file meta: the encoding pydicom found while reading it
        implicit, little = dataset.original_encoding
        if implicit:
            return ImplicitVRLittleEndian
        return ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if len(uid) > 64 or not UID_RE.fullmatch(uid):
        raise ImageDecodeError("DICOM transfer syntax UID is malformed")
    return UID(uid)


def _decoder(dataset: Dataset) -> Any:
    uid = _transfer_syntax(dataset)
    named = f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise UnsupportedTransferSyntaxError(
            f"DICOM transfer syntax {named} is not supported"
        ) from exc
    if not decoder.is_available:
        raise UnsupportedTransferSyntaxError(
            f"DICOM transfer syntax {named} is not supported: no decoder installed"
        )
    return decoder


def _photometric(dataset: Dataset) -> str:
    try:
        value = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    except Exception:
        value = ""
    samples = _header_int(dataset, "SamplesPerPixel", default=1, low=1)
    if (value in _MONOCHROME and samples == 1) or (value in _COLOUR and samples == 3):
        return value
    raise ImageDecodeError(
        f"DICOM photometric interpretation with {samples} samples per pixel is not supported "
        f"(only {', '.join(_MONOCHROME)} with 1 sample, {', '.join(_COLOUR)} with 3)"
    )
