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
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
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
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedTransferSyntaxError,
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


def read(data: bytes) -> Dataset | None:
    """The parsed dataset when `data` is DICOM by content, None when it is not DICOM.

    DICOM: "DICM" after the 128-byte preamble, or (no preamble) bytes that start like a dataset,
    that Pillow does not take for a picture, and that parse into a dataset with a group 0x0008
    element or pixel data. Raises ImageDecodeError for a preamble file pydicom cannot read.
    """
    if data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == b"DICM":
        dataset = _parse(data)
        if dataset is None:
            raise ImageDecodeError("cannot read DICOM object: malformed or truncated header")
    elif data[:2] not in _BARE_STARTS or _is_picture(data):
        return None
    else:
        dataset = _parse(data)
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
    dataset: Dataset, max_pixels: int, window: Window | None, max_frames: int
) -> list[DecodedSlice]:
    """One DecodedSlice per frame: grayscale windowed from Hounsfield units, colour as RGB."""
    rows, columns, frames = _check_header(dataset, max_pixels, max_frames)
    decoder = _decoder(dataset)
    photometric = _photometric(dataset)
    slices = []
    for index, arr in enumerate(_frames(decoder, dataset)):
        if index >= frames or arr.shape[:2] != (rows, columns):
            raise ImageDecodeError("DICOM pixel data does not match its declared size")
        if photometric in _COLOUR:
            image = Image.fromarray(colour_to_uint8(dataset, arr), "RGB")
        else:
            image = Image.fromarray(grey_to_uint8(dataset, arr, index, photometric, window), "L")
        slices.append(DecodedSlice(image, slice_meta(dataset, index if frames > 1 else None)))
    if len(slices) != frames:
        raise ImageDecodeError("DICOM pixel data does not hold the frames its header declares")
    return slices


def _frames(decoder: Any, dataset: Dataset) -> Iterator[np.ndarray]:
    """Decoded frames one at a time, so only one raw frame is held at once."""
    try:
        for arr, _ in decoder.iter_array(dataset, as_rgb=True):
            yield arr
    except Exception as exc:  # the plugins raise anything on corrupt data
        raise ImageDecodeError(f"cannot decode DICOM pixel data: {type(exc).__name__}") from exc


# ----------------------------------------------------------------------------- reading


def _parse(data: bytes) -> Dataset | None:
    """pydicom's reading of the bytes (pixel data not decoded), or None when it gives up."""
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # pydicom raises many types on malformed input
        return None


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
