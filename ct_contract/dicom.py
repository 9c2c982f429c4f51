"""DICOM intake: detection by content, header caps, transfer syntaxes, decoding frame by frame.

preprocess.py is the entry point (`decode_slices`, `load_model_input`); this module reads and
checks a dataset and decodes its frames, and dicom_values.py turns each frame into 8-bit pixels.
Nothing from the dataset leaves except SliceMeta's fields: error messages name only the transfer
syntax, sizes and counts, never a tag value, and pydicom's own warnings and log lines (which quote
tag values) are silenced here.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom import filereader
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    RLELossless,
)

from ct_contract.dicom_values import (
    UID_RE,
    Window,
    colour_to_uint8,
    grey_to_uint8,
    slice_meta,
    window_to_uint8,
)
from ct_contract.slices import (
    ALLOWED_FORMATS,
    BLOCK_VALUES,
    DecodeBudget,
    DecodeBudgetError,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedTransferSyntaxError,
    image_bytes,
)

__all__ = ["UnsupportedTransferSyntaxError", "Window", "window_to_uint8"]

# pydicom logs every warning to the "pydicom" logger as well, quoting tag values (names, dates):
# keep those out of the gateway's JSON logs and off stderr. Reading validation off: malformed
# values are dealt with where they are used, not warned about.
logging.getLogger("pydicom").propagate = False
warnings.filterwarnings("ignore", module=r"(pydicom|ct_contract\.dicom\w*)(\.|$)")
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

_MAGIC_OFFSET = 128
# A dataset without preamble starts with a group 0x0002 (file meta) or 0x0008 element, little or
# big endian. No picture format the gateway takes starts with these bytes.
_BARE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_DEFLATED = str(DeflatedExplicitVRLittleEndian).encode()
_INFLATE_CHUNK = 1 << 16
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


def read(data: bytes, budget: DecodeBudget | None = None) -> Dataset | None:
    """The parsed dataset when `data` is DICOM by content, None when it is not DICOM.

    DICOM: "DICM" after the 128-byte preamble, or (no preamble) bytes that start like a dataset,
    that Pillow does not take for a picture, and that parse into a dataset with a group 0x0008
    element or pixel data. Raises ImageDecodeError for a preamble file pydicom cannot read, and
    DecodeBudgetError for a deflated dataset that inflates past what is left of `budget` (its
    inflated bytes are charged to it).
    """
    budget = budget or DecodeBudget()
    if data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == b"DICM":
        dataset = _parse(data, budget)
        if dataset is None:
            raise ImageDecodeError("cannot read DICOM object: malformed or truncated header")
    elif data[:2] not in _BARE_STARTS or _is_picture(data):
        return None
    else:
        dataset = _parse(data, budget)
        if dataset is None or not any(
            tag.group == 0x0008 or tag == _PIXEL_DATA
            for tag in dataset.keys()  # noqa: SIM118 - iterating a Dataset converts every value
        ):
            return None
    _check_encapsulation_complete(dataset, data)
    return dataset


def _check_encapsulation_complete(dataset: Dataset, data: bytes) -> None:
    """Compressed pixel data must end in its sequence delimiter: pydicom reads a file cut inside
    it up to the end (with a warning only), and some decoders then return part of an image."""
    try:
        element = dataset.get_item(_PIXEL_DATA) if _PIXEL_DATA in dataset else None
        deflated = dataset.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        if element is None or element.length != _UNDEFINED_LENGTH or deflated:
            return  # native data (its length is checked on decoding); deflated: offsets differ
        end = element.value_tell + len(element.value)
    except Exception:  # unreadable here: the decoder will refuse it
        return
    if data[end : end + 8] != _SEQUENCE_DELIMITER:
        raise ImageDecodeError("DICOM pixel data is truncated")


def frame_count(dataset: Dataset) -> int:
    """NumberOfFrames (1 when absent). Raises ImageDecodeError when it is not a positive number."""
    return _header_int(dataset, "NumberOfFrames", default=1, low=1)


def decode(
    dataset: Dataset,
    max_pixels: int,
    window: Window | None,
    max_frames: int,
    budget: DecodeBudget | None = None,
    shrink: Callable[[Image.Image], Image.Image] | None = None,
) -> list[DecodedSlice]:
    """One DecodedSlice per frame: grayscale windowed from Hounsfield units, colour as RGB.

    Each frame's decoding memory is charged to `budget` before it is decoded and given back once
    the frame is an 8-bit image, passed through `shrink` (the model's input size) at once: only
    the shrunk images are kept (and charged) while the next frames decode."""
    budget = budget or DecodeBudget()
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


# ----------------------------------------------------------------------------- reading


def _parse(data: bytes, budget: DecodeBudget) -> Dataset | None:
    """pydicom's reading of the bytes (pixel data not decoded), or None when it gives up."""
    try:
        start = _deflated_start(data) if _DEFLATED in data else None
        if start is not None:
            return _read_deflated(data, start, budget)
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except ImageTooLargeError:
        raise
    except Exception:  # pydicom raises many types on malformed input
        return None


def _deflated_start(data: bytes) -> int | None:
    """Where the deflated dataset starts, when the file meta names the Deflated Explicit VR
    Little Endian syntax: pydicom would inflate the rest whole, with no limit, while parsing."""
    fp = io.BytesIO(data)
    filereader.read_preamble(fp, force=True)
    meta = filereader._read_file_meta_info(fp)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return None
    filereader._read_command_set_elements(fp)
    return fp.tell()


def _read_deflated(data: bytes, start: int, budget: DecodeBudget) -> Dataset:
    """The dataset pydicom would read. The stream is inflated once to count (nothing kept, refused
    past half of what is left of `budget`), then again into memory charged to `budget`: the
    inflated bytes and pydicom's copies of the values in them."""
    fp = io.BytesIO(data)
    preamble = filereader.read_preamble(fp, force=True)
    meta = filereader._read_file_meta_info(fp)
    stream = memoryview(data)[start:]
    size = _inflated_size(stream, budget.left() // 2)
    budget.charge(2 * size, "the deflated DICOM dataset")
    inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(stream, size + 1)
    dataset = filereader.read_dataset(io.BytesIO(inflated), False, True)
    del inflated  # the dataset holds copies of its values
    ds = FileDataset(io.BytesIO(), dataset, preamble, meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds


def _inflated_size(stream: memoryview, limit: int) -> int:
    """How many bytes a raw deflate stream inflates to, keeping none of them; DecodeBudgetError
    as soon as that passes `limit`."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    for start in range(0, len(stream), _INFLATE_CHUNK):
        pending: bytes | memoryview = stream[start : start + _INFLATE_CHUNK]
        while True:
            size += len(chunk := inflater.decompress(pending, _INFLATE_CHUNK))
            if size > limit:
                raise DecodeBudgetError(
                    f"the deflated DICOM dataset inflates past {limit} bytes, more than this "
                    "request's memory budget leaves for it"
                )
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and len(chunk) < _INFLATE_CHUNK):
                break
        if inflater.eof:  # what follows the stream is not inflated (pydicom ignores it too)
            break
    return size


def _is_picture(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS):
            return True
    except Exception:  # anything Pillow rejects is not a picture
        return False


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
    if _PIXEL_DATA not in dataset:
        raise ImageDecodeError("DICOM object has no pixel data")
    rows = _header_int(dataset, "Rows", low=1)
    columns = _header_int(dataset, "Columns", low=1)
    samples = _header_int(dataset, "SamplesPerPixel", default=1, low=1)
    frames = frame_count(dataset)
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
